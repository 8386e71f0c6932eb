"""The production compose files: docker-compose accepts both with the example environment, every
long-running service is health-checked and starts only when what it needs is healthy, secrets
come from the environment only (and a missing one stops compose), Flower is behind basic auth,
and an extra edge host needs nothing but the broker URL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.services import REPO

COMPOSE = REPO / "compose"
ENV_EXAMPLE = COMPOSE / ".env.example"


def compose(*args: str, env_file=ENV_EXAMPLE) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: bin/bootstrap --test installs it")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}  # no stray variables
    return subprocess.run([binary, "--env-file", str(env_file), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def config(file: str) -> dict:
    result = compose("-f", f"compose/{file}", "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("file", ["docker-compose.yml", "edge-host.yml"])
def test_compose_accepts_the_file_with_the_example_environment(file):
    result = compose("-f", f"compose/{file}", "config", "-q")
    assert result.returncode == 0, result.stderr


def test_production_stack_services_and_health_gates():
    stack = config("docker-compose.yml")
    services = stack["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "control", "beat", "events", "webhooks", "flower",
                             "frames-redis", "edge", "frames"}
    for name, service in services.items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, gate in (service.get("depends_on") or {}).items():
            assert gate["condition"] in ("service_healthy", "service_completed_successfully"), (name, needed)
        assert not service.get("privileged"), name
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["beat"]["depends_on"]["control"]["condition"] == "service_healthy"
    assert services["api"]["command"][:4] == ["gunicorn", "-c", "python:edgeproxy.gunicorn_conf", "edgeproxy.wsgi"]
    control = " ".join(services["control"]["command"])
    assert "-A edgeproxy.celery worker" in control and "--queues control" in control and "--pool threads" in control
    assert services["beat"]["command"][:4] == ["celery", "-A", "edgeproxy.celery", "beat"]
    assert services["edge"]["command"] == ["python", "-m", "worker"]
    assert services["events"]["command"][:3] == ["python", "manage.py", "events_relay"]
    assert "--queues webhooks" in " ".join(services["webhooks"]["command"])
    assert services["frames"]["command"] == ["python", "-m", "worker.frames"]
    assert any(v.startswith("/var/run/docker.sock:") for v in services["edge"]["volumes"])
    # The socket goes to the edge worker only; the app runs as the image's non-root user everywhere.
    assert [n for n, s in services.items() if any("docker.sock" in v for v in s.get("volumes", []))] == ["edge"]
    assert not [n for n, s in services.items() if str(s.get("user", "")) in ("0", "root")]
    # Flower: basic auth from the environment; the broker: a password; the API: secrets required.
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:change-me-flower"
    assert "--requirepass" in " ".join(services["redis"]["command"])
    api_env = services["api"]["environment"]
    assert api_env["EDGEPROXY_REQUIRE_SECRETS"] == "true"
    assert api_env["REDIS_URL"].startswith("redis://:change-me-redis@redis:")
    # Edge services never get the database, nor the control plane's secrets.
    for name in ("edge", "frames"):
        env = services[name]["environment"]
        assert "DATABASE_URL" not in env and "SECRET_KEY" not in env and "EDGEPROXY_ENCRYPTION_KEY" not in env
        assert env["EDGEPROXY_FRAMES_REDIS_URL"] == "redis://127.0.0.1:6380/0"  # no password in camera env
        assert env["EDGEPROXY_GRPC_TOKENS"] == "change-me-grpc-token"
    app_images = {s["image"] for n, s in services.items() if "build" in s}
    assert app_images == {"edgeproxy/edgeproxy:0.1.0"}


def test_an_extra_edge_host_needs_only_the_broker_url():
    services = config("edge-host.yml")["services"]
    assert set(services) == {"edge", "frames", "frames-redis"}
    edge = services["edge"]["environment"]
    assert edge["REDIS_URL"] == "redis://:change-me-redis@control-plane.example:6379/0"
    assert "DATABASE_URL" not in edge and "SECRET_KEY" not in edge
    assert edge["EDGEPROXY_FRAMES_ADVERTISE"] == "192.0.2.10:50001"
    for service in services.values():
        assert service["network_mode"] == "host"
        assert service["healthcheck"]["test"]


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "SECRET_KEY", "FLOWER_BASIC_AUTH", "EDGEPROXY_GRPC_TOKEN"])
def test_a_missing_secret_stops_compose(tmp_path, missing):
    env_file = tmp_path / "env"
    env_file.write_text("".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines()
                                if not line.startswith(missing + "=")))
    result = compose("-f", "compose/docker-compose.yml", "config", "-q", env_file=env_file)
    assert result.returncode != 0
    assert missing in result.stderr


def test_no_secret_is_written_in_the_compose_files():
    for file in ("docker-compose.yml", "edge-host.yml"):
        text = (COMPOSE / file).read_text()
        for line in text.splitlines():
            match = re.match(r"\s*([A-Z_]*(PASSWORD|SECRET|KEY|TOKEN|AUTH)[A-Z_]*):\s*(.+)", line)
            if match and match.group(3).strip('"') not in ("true", "false"):
                assert "${" in match.group(3), line  # only ever taken from the environment


def test_app_image_dockerfile():
    text = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.M)
    assert "pip install -r /tmp/requirements.txt" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    for copied in re.findall(r"^COPY (\S+)/ ", text, re.M):
        assert (REPO / copied).is_dir(), copied
    assert (COMPOSE / "camera" / "Dockerfile").is_file()
