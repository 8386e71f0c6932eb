"""An app's own frame-API key (docs/apps.md, "Frames for the app"): made by the edge host's app
runner when the frame server requires keys, accepted by the running frame server without a restart,
refused once the app is removed. Real frame server, real key file, real Docker engine."""

from __future__ import annotations

import secrets
import stat

import grpc

from tests.worker.frames.test_frame_server_guards import FrameServer, status_of
from worker import apps
from worker.frames.app_keys import FRAMES_TOKEN_ENV, keys_path
from worker.frames.proto import video_streaming_pb2 as pb

APP = "keyed-app"
OPERATOR_KEY = "operator-frames-key"


class Agent:
    """What the app runner uses of the edge agent: its host, its Docker engine and its reports."""

    def __init__(self, host: str, client):
        self.host = host
        self.runtime = type("Runtime", (), {"client": client, "shm": None})()
        self.reports: list = []

    def report_started(self, operation_id: str) -> None:
        self.reports.append(("started", operation_id))

    def tell_control(self, message) -> None:
        self.reports.append(message)


def system_time(server: FrameServer, key: str | None) -> int:
    metadata = (("authorization", f"Token {key}"),) if key else ()
    return server.stub.SystemTime(pb.SystemTimeRequest(), metadata=metadata, timeout=5).current_time


def test_an_app_gets_its_own_key_that_works_until_the_app_is_removed(workdir, frames_redis, docker_client, settings,
                                                                      monkeypatch, tmp_path, caplog):
    host = f"test-appkeys-{secrets.token_hex(3)}"
    settings.STATE_DIR = tmp_path
    runner = apps.AppRunner(Agent(host, docker_client))
    spec = {"name": APP, "cameras": []}

    # Without frame-server keys, an app gets none (and no key file is made).
    monkeypatch.delenv("EDGEPROXY_GRPC_TOKENS", raising=False)
    monkeypatch.delenv("EDGEPROXY_GRPC_TOKENS_FILE", raising=False)
    assert FRAMES_TOKEN_ENV not in runner._environment(spec, runner._frames_key(APP))
    assert not keys_path(tmp_path, host).exists()

    # The worker and the frame server of the host share the keys' settings and the state folder.
    monkeypatch.setenv("EDGEPROXY_GRPC_TOKENS", OPERATOR_KEY)
    with FrameServer(workdir, frames_redis.url, "app-keys", EDGEPROXY_GRPC_TOKENS=OPERATOR_KEY,
                     EDGEPROXY_STATE_DIR=str(tmp_path), EDGEPROXY_HOST_NAME=host) as server:
        assert system_time(server, OPERATOR_KEY) > 0

        # Started while keys are required: a key of its own, in its environment, kept owner-only.
        key = runner._environment(spec, runner._frames_key(APP))[FRAMES_TOKEN_ENV]
        assert len(key) >= 40 and key != OPERATOR_KEY
        assert runner._frames_key(APP) == key  # the same key each time the app is (re)started
        mode = stat.S_IMODE(keys_path(tmp_path, host).stat().st_mode)
        assert mode == 0o600, oct(mode)
        assert system_time(server, key) > 0  # accepted without restarting the frame server

        for wrong in (secrets.token_urlsafe(32), key[:-1], None):
            code, details = status_of(lambda w=wrong: system_time(server, w))
            assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)

        # The app is removed (no container left on this host): its key is refused from now on.
        with caplog.at_level("DEBUG"):
            runner.remove("op-remove-1", APP)
        finished = agent_finished(runner)
        assert finished.ok and finished.removed, finished
        code, details = status_of(lambda: system_time(server, key))
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        assert system_time(server, OPERATOR_KEY) > 0  # the operator's key is untouched

    # The key was in no report, no log of the worker, no log of the frame server.
    assert key not in repr(runner.agent.reports)
    assert key not in caplog.text
    assert key not in server.process.output()


def agent_finished(runner):
    return next(m for m in reversed(runner.agent.reports) if type(m).__name__ == "OperationFinished")

