"""The behaviour both camera runtimes share (Docker engine and local child processes)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import textwrap

import pytest

from tests.support.services import wait_until
from worker.runtimes.base import STATE_KEYS, ZERO_TIME, RuntimeError_

from .conftest import CRASHER, LOGGER, PASSWORD, PYTHON, STUBBORN, TEST_IMAGE, URL_PROBE, make_spec, unique


def decoded(observed, stream: str) -> str:
    value = observed.logs[stream]
    return "" if value is None else base64.b64decode(value).decode()


def log_text(runtime, name: str, stream: str = "stdout") -> str:
    observed = runtime.observe(name)
    return "" if observed is None else decoded(observed, stream)


def test_ensure_running_creates_once_and_is_idempotent(runtime):
    spec = make_spec(runtime)
    first = runtime.ensure_running(spec)
    assert first.name == spec.name and first.camera_id == spec.camera_id
    assert first.status == "running"
    assert first.container_id
    assert first.image == TEST_IMAGE
    assert set(first.state) == set(STATE_KEYS)
    assert first.state["Running"] is True and first.state["Pid"] > 0
    assert first.state["StartedAt"] != ZERO_TIME
    observed = runtime.observe(spec.name)
    assert observed.logs is not None and set(observed.logs) == {"stdout", "stderr"}
    json.dumps(first.as_dict())  # JSON-able for the control plane

    second = runtime.ensure_running(spec)
    assert second.container_id == first.container_id
    assert second.state["Pid"] == first.state["Pid"]
    assert second.state["StartedAt"] == first.state["StartedAt"]
    assert [o.name for o in runtime.observe_all()] == [spec.name]
    assert runtime.observe_all()[0].logs is None  # observe_all has no logs unless asked

    # The default camera program (stand-in or real) logs something on start.
    wait_until(lambda: (o := runtime.observe(spec.name)) and (o.logs["stdout"] or o.logs["stderr"]), 15,
               message="the camera program's first log line")


def test_unknown_camera(runtime):
    assert runtime.observe("no-such-camera") is None
    assert runtime.stop("no-such-camera") is None
    assert runtime.remove("no-such-camera") is False


def test_invalid_name_is_refused(runtime):
    with pytest.raises(RuntimeError_, match="invalid camera name"):
        runtime.ensure_running(make_spec(runtime, name="../etc"))


def test_logs_are_split_tailed_and_redacted(runtime):
    spec = make_spec(runtime, command=LOGGER)
    runtime.ensure_running(spec)
    wait_until(lambda: "connecting" in log_text(runtime, spec.name, "stderr"), 15, message="151 log lines")
    observed = runtime.observe(spec.name)
    out, err = decoded(observed, "stdout"), decoded(observed, "stderr")
    # The last 100 lines of both streams, as `docker logs --tail 100`, split by stream.
    lines = out.splitlines()
    assert len(lines) == 99 and lines[0] == "line 51" and lines[-1] == "line 149"
    assert err == "connecting to rtsp://admin:***@10.0.0.9/live, password ***\n"
    assert PASSWORD not in out + err
    assert PASSWORD not in json.dumps(observed.as_dict())
    assert runtime.observe(spec.name, with_logs=False).logs is None


def test_empty_stream_is_null(runtime):
    spec = make_spec(runtime, command=CRASHER)
    runtime.ensure_running(spec)
    wait_until(lambda: "boom" in log_text(runtime, spec.name), 15, message="output")
    assert runtime.observe(spec.name).logs["stderr"] is None
    runtime.stop(spec.name, timeout=1)


def test_url_arrives_in_a_private_file_not_the_environment(runtime):
    spec = make_spec(runtime, command=URL_PROBE)
    runtime.ensure_running(spec)
    line = wait_until(lambda: log_text(runtime, spec.name).strip(), 15, message="probe output")
    sha = hashlib.sha256(spec.rtsp_url.encode()).hexdigest()
    assert line == f"sha {sha} mode {'0o400' if runtime.name == 'docker' else '0o600'} env False name {spec.name}"


def test_stop_keeps_it_and_ensure_running_starts_it_again(runtime):
    spec = make_spec(runtime, command=LOGGER)
    started = runtime.ensure_running(spec)
    wait_until(lambda: "line 1" in log_text(runtime, spec.name), 15, message="start")  # handler installed
    stopped = runtime.stop(spec.name, timeout=5)
    assert stopped.status == "exited"
    assert stopped.state["Running"] is False and stopped.state["Pid"] == 0
    assert stopped.state["ExitCode"] == 0  # it handled SIGTERM
    assert stopped.state["FinishedAt"] != ZERO_TIME
    assert stopped.container_id == started.container_id
    assert runtime.stop(spec.name).status == "exited"  # idempotent
    assert [o.status for o in runtime.observe_all()] == ["exited"]

    again = runtime.ensure_running(spec)
    assert again.status == "running"
    assert again.container_id == started.container_id
    assert again.state["Pid"] > 0 and again.state["StartedAt"] != started.state["StartedAt"]


def test_stop_kills_a_process_that_ignores_sigterm(runtime):
    spec = make_spec(runtime, command=STUBBORN)
    runtime.ensure_running(spec)
    wait_until(lambda: "ignoring" in log_text(runtime, spec.name), 15, message="start")
    stopped = runtime.stop(spec.name, timeout=1)
    assert stopped.status == "exited"
    assert stopped.state["ExitCode"] == 137


def test_remove_deletes_it(runtime):
    spec = make_spec(runtime)
    runtime.ensure_running(spec)
    # (Once the program handles SIGTERM: as PID 1 in a container it ignores it until then.)
    wait_until(lambda: any(runtime.observe(spec.name).logs.values()), 15, message="start")
    assert runtime.remove(spec.name) is True
    assert runtime.observe(spec.name) is None
    assert runtime.observe_all() == []
    assert runtime.remove(spec.name) is False


def test_changed_spec_recreates(runtime):
    spec = make_spec(runtime, command=URL_PROBE)
    first = runtime.ensure_running(spec)
    spec.rtsp_url = spec.rtsp_url.replace(PASSWORD, PASSWORD + "2")
    second = runtime.ensure_running(spec)
    assert second.container_id != first.container_id and second.status == "running"
    sha = hashlib.sha256(spec.rtsp_url.encode()).hexdigest()
    wait_until(lambda: sha in log_text(runtime, spec.name), 15, message="the new URL")
    spec.extra_env = {"EDGEPROXY_LOG_LEVEL": "debug"}
    third = runtime.ensure_running(spec)
    assert third.container_id not in (first.container_id, second.container_id)
    assert runtime.ensure_running(spec).container_id == third.container_id
    assert len(runtime.observe_all()) == 1


def test_a_crashing_camera_is_restarted_until_stopped(runtime):
    spec = make_spec(runtime, command=CRASHER)
    runtime.ensure_running(spec)
    # Every run prints "boom": two of them prove a restart by the unless-stopped policy.
    wait_until(lambda: log_text(runtime, spec.name).count("boom") >= 2, 20, message="a restart")
    observed = runtime.observe(spec.name)
    assert observed.status in ("running", "restarting")
    if observed.status == "restarting":
        assert observed.state["Restarting"] is True and observed.state["ExitCode"] == 3

    # Both runtimes count the restarts of the policy, and report them alike (the upgrade gate reads them).
    wait_until(lambda: runtime.observe(spec.name, with_logs=False).restarts >= 2, 20, message="two restarts counted")
    assert runtime.restart_count(spec.name) >= 2

    stopped = runtime.stop(spec.name, timeout=2)
    assert stopped.status == "exited"
    assert stopped.restarts >= 2  # a stop keeps the count, as Docker's RestartCount
    count = log_text(runtime, spec.name).count("boom")
    with pytest.raises(TimeoutError):  # it stays stopped
        wait_until(lambda: runtime.observe(spec.name).status != "exited", 1.5)
    assert log_text(runtime, spec.name).count("boom") == count


def test_hosts_see_only_their_own_cameras(kind, make_runtime):
    a, b = make_runtime(kind), make_runtime(kind)
    spec_a, spec_b = make_spec(a), make_spec(b)
    a.ensure_running(spec_a)
    b.ensure_running(spec_b)
    assert [o.name for o in a.observe_all()] == [spec_a.name]
    assert [o.name for o in b.observe_all()] == [spec_b.name]
    assert a.observe(spec_b.name) is None and b.observe(spec_a.name) is None
    assert a.stop(spec_b.name) is None
    assert a.remove(spec_b.name) is False
    assert b.observe(spec_b.name).status == "running"


def test_spec_for_another_host_is_refused(runtime):
    spec = make_spec(runtime)
    spec.host = "some-other-host"
    with pytest.raises(RuntimeError_, match="belongs to host some-other-host"):
        runtime.ensure_running(spec)


def test_program_that_cannot_start_is_a_clear_error(runtime):
    """Locally the exec fails at once; in Docker, docker-init (PID 1) starts and then cannot exec the
    program, so the container crash-loops and says why in its logs. Either way the user sees why."""
    spec = make_spec(runtime, command=["/nonexistent/camera-program"])
    if runtime.name == "local":
        with pytest.raises(RuntimeError_) as info:
            runtime.ensure_running(spec)
        message = str(info.value)
        assert "start" in message and PASSWORD not in message
        assert len(message) < 400
        observed = runtime.observe(spec.name)
        assert observed is not None and observed.status == "created"
        return
    runtime.ensure_running(spec)

    def failed():
        observed = runtime.observe(spec.name)
        logs = b"".join(base64.b64decode(v) for v in (observed.logs or {}).values() if v)
        return observed.state["ExitCode"] != 0 and b"/nonexistent/camera-program" in logs and observed

    observed = wait_until(failed, 20, message="the failed exec to show")
    assert observed.status in ("restarting", "exited", "running")


def test_facts(runtime):
    facts = runtime.facts()
    assert facts["runtime"] == runtime.name
    for key in ("server_version", "api_version", "cpus", "memory", "os", "kernel", "architecture"):
        assert key in facts
    assert facts["cpus"] >= 1 and facts["memory"] > 0 and facts["architecture"]
    json.dumps(facts)


def test_many_cameras(runtime):
    specs = [make_spec(runtime, name=unique("many")) for _ in range(5)]
    for spec in specs:
        runtime.ensure_running(spec)
    observed = runtime.observe_all(with_logs=True)
    assert sorted(o.name for o in observed) == sorted(s.name for s in specs)
    assert all(o.status == "running" and o.logs is not None for o in observed)
    for spec in specs:
        assert runtime.remove(spec.name)
    assert runtime.observe_all() == []


RTMP_PASSWORD = "rtmp-pw-77x"
STREAM_KEY = "streamkey-0a9b8c"
# Reports how it got its RTMP URL, and what of it its environment holds.
RTMP_PROBE = [PYTHON, "-c", textwrap.dedent("""
    import hashlib, os, signal, stat, sys, time
    from urllib.parse import urlsplit
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    path = os.environ.get("EDGEPROXY_RTMP_URL_FILE", "")
    url = open(path).read() if path else ""
    mode = oct(stat.S_IMODE(os.stat(path).st_mode)) if path else "-"
    environ = open("/proc/self/environ", "rb").read()
    parts = urlsplit(url)
    leaked = any(s and s.encode() in environ for s in (parts.password, parts.path.rsplit("/", 1)[-1]))
    print("sha", hashlib.sha256(url.encode()).hexdigest(), "mode", mode, "env", "EDGEPROXY_RTMP_URL" in os.environ,
          "leaked", leaked, flush=True)
    while True:
        time.sleep(0.05)
""")]


def test_rtmp_url_arrives_in_a_private_file_not_the_environment(runtime, request):
    url = f"rtmp://pub:{RTMP_PASSWORD}@127.0.0.1:1935/app/{STREAM_KEY}"
    spec = make_spec(runtime, command=RTMP_PROBE, rtmp_url=url)
    observed = runtime.ensure_running(spec)
    line = wait_until(lambda: log_text(runtime, spec.name).strip(), 15, message="probe output")
    sha = hashlib.sha256(url.encode()).hexdigest()
    assert line == f"sha {sha} mode {'0o400' if runtime.name == 'docker' else '0o600'} env False leaked False"
    # What others can see of the process: docker inspect, or /proc/<pid>/environ and cmdline.
    if runtime.name == "docker":
        client = request.getfixturevalue("docker_client")
        seen = json.dumps(client.api.inspect_container(observed.container_id)).encode()
    else:
        pid = runtime.observe(spec.name).state["Pid"]
        with open(f"/proc/{pid}/environ", "rb") as env, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            seen = env.read() + cmdline.read()
    assert RTMP_PASSWORD.encode() not in seen and STREAM_KEY.encode() not in seen
    # A changed RTMP URL is noticed (the file is compared, not only the environment).
    other = url.replace(STREAM_KEY, "streamkey-changed1")
    runtime.ensure_running(dataclasses.replace(spec, rtmp_url=other))
    sha = hashlib.sha256(other.encode()).hexdigest()
    wait_until(lambda: f"sha {sha}" in log_text(runtime, spec.name), 15, message="the new URL")
