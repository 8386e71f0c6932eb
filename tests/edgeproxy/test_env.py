"""Settings from the environment are typed and strict (pure logic)."""

import pytest

from edgeproxy.env import SettingError, envbool, envchoice, envdatabase, envfile, envint, envstr


def test_envbool(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert envbool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(SettingError, match="X_FLAG"):
        envbool("X_FLAG", True)


def test_envint_bounds(monkeypatch):
    monkeypatch.setenv("X_INT", "12")
    assert envint("X_INT", 1) == 12
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(SettingError, match="X_INT"):
        envint("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(SettingError, match="at least 1"):
        envint("X_INT", 1, minimum=1)


def test_file_secrets(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envstr("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingError, match="X_SECRET_FILE"):
        envstr("X_SECRET")


def test_envchoice(monkeypatch):
    monkeypatch.setenv("X_RUNTIME", "podman")
    with pytest.raises(SettingError, match="docker"):
        envchoice("X_RUNTIME", "auto", ("auto", "docker", "local"))


def test_an_explicit_mapping_is_read_instead_of_the_environment(monkeypatch):
    monkeypatch.setenv("X_PORT", "1")
    assert envint("X_PORT", 5, env={"X_PORT": "7"}) == 7
    assert envint("X_PORT", 5, env={}) == 5
    with pytest.raises(SettingError, match="X_PORT must be at most 10"):
        envint("X_PORT", 5, maximum=10, env={"X_PORT": "11"})


def test_envfile(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert envfile("X_CA", {"X_CA": str(pem)}) == "-----BEGIN CERTIFICATE-----\n"
    assert envfile("X_CA", {"X_CA": " "}) is None and envfile("X_CA", {}) is None
    with pytest.raises(SettingError, match="X_CA: cannot read"):
        envfile("X_CA", {"X_CA": str(tmp_path / "missing.pem")})


def test_envdatabase(tmp_path):
    db = envdatabase("X_DB", "sqlite:////tmp/default.sqlite3", {"X_DB": "postgres://u:pw@127.0.0.1:5433/name"})
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["PORT"]) == (
        "django.db.backends.postgresql", "name", "u", "pw", 5433)
    assert envdatabase("X_DB", "sqlite:////tmp/default.sqlite3", {})["NAME"] == "/tmp/default.sqlite3"
    secret = tmp_path / "db-url"
    secret.write_text("postgres://u:from-file@db/name\n")
    assert envdatabase("X_DB", "sqlite:////x", {"X_DB_FILE": str(secret)})["PASSWORD"] == "from-file"
    with pytest.raises(SettingError, match="X_DB must be a database URL") as refused:
        envdatabase("X_DB", "sqlite:////x", {"X_DB": "mongodb://u:hunter2@h/db"})
    assert "hunter2" not in str(refused.value)


def test_the_frame_server_reads_through_it():
    from worker.frames.config import ConfigError, FrameServerConfig

    assert ConfigError is SettingError
    config = FrameServerConfig.from_env({"EDGEPROXY_GRPC_PORT": "50100", "LOG_LEVEL": "", "EDGEPROXY_HOST_NAME": "h1"})
    assert (config.port, config.log_level, config.host) == (50100, "INFO", "h1")
    with pytest.raises(SettingError, match="EDGEPROXY_GRPC_PORT must be at most 65535"):
        FrameServerConfig.from_env({"EDGEPROXY_GRPC_PORT": "70000"})
