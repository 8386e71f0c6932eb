"""Settings from the environment are typed and strict (pure logic)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from edgeproxy.env import envbool, envchoice, envint, envstr


def test_envbool(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert envbool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        envbool("X_FLAG", True)


def test_envint_bounds(monkeypatch):
    monkeypatch.setenv("X_INT", "12")
    assert envint("X_INT", 1) == 12
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        envint("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("X_INT", 1, minimum=1)


def test_file_secrets(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envstr("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        envstr("X_SECRET")


def test_envchoice(monkeypatch):
    monkeypatch.setenv("X_RUNTIME", "podman")
    with pytest.raises(ImproperlyConfigured, match="docker"):
        envchoice("X_RUNTIME", "auto", ("auto", "docker", "local"))
