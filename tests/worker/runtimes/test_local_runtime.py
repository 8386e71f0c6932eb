"""What only the local runtime does: threads, state files, surviving a restart of the worker."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.support.services import REPO, wait_until
from worker.runtimes.base import RuntimeError_
from worker.runtimes.local import LocalRuntime, _alive, _proc_stat

from .conftest import CRASHER, LOGGER, PASSWORD, PYTHON, make_spec, unique


@pytest.fixture
def runtime(make_runtime):
    return make_runtime("local")


def test_state_files_are_private_and_hold_no_password(runtime):
    spec = make_spec(runtime)
    runtime.ensure_running(spec)
    camera_dir = runtime.state_dir / spec.name
    assert stat.S_IMODE(os.stat(runtime.state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(camera_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(camera_dir / "rtsp_url").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(camera_dir / "record.json").st_mode) == 0o600
    assert (camera_dir / "rtsp_url").read_text() == spec.rtsp_url
    assert PASSWORD not in (camera_dir / "record.json").read_text()
    pid = runtime.observe(spec.name).state["Pid"]
    with open(f"/proc/{pid}/environ", "rb") as fh:
        assert PASSWORD.encode() not in fh.read()
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert PASSWORD.encode() not in fh.read()
    runtime.remove(spec.name)
    assert not camera_dir.exists()


def test_worker_secrets_are_not_inherited(runtime, monkeypatch):
    monkeypatch.setenv("EDGEPROXY_ENCRYPTION_KEY", "worker-only-secret")
    spec = make_spec(runtime, command=[PYTHON, "-c", textwrap.dedent("""
        import os, time
        print("key" if "EDGEPROXY_ENCRYPTION_KEY" in os.environ else "clean", flush=True)
        time.sleep(30)
    """)])
    runtime.ensure_running(spec)
    wait_until(lambda: runtime.observe(spec.name).logs["stdout"], 10, message="output")
    assert runtime.observe(spec.name).logs["stdout"] == "Y2xlYW4K"  # base64 of "clean\n"


def test_crash_restart_has_new_pid_and_same_id(runtime):
    spec = make_spec(runtime, command=CRASHER)
    first = runtime.ensure_running(spec)
    wait_until(lambda: runtime.restart_count(spec.name) >= 2, 10, message="two restarts")
    observed = runtime.observe(spec.name)
    assert observed.container_id == first.container_id
    assert observed.state["Pid"] != first.state["Pid"]
    assert observed.state["ExitCode"] in (0, 3)


def test_concurrent_calls_from_many_threads(runtime):
    spec = make_spec(runtime, command=LOGGER)
    others = [make_spec(runtime, name=unique("thr")) for _ in range(4)]
    results, errors = [], []
    barrier = threading.Barrier(12)

    def call(fn, *args):
        try:
            barrier.wait()
            results.append(fn(*args))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(runtime.ensure_running, spec)) for _ in range(6)]
    threads += [threading.Thread(target=call, args=(runtime.ensure_running, s)) for s in others]
    threads += [threading.Thread(target=call, args=(runtime.observe_all, True)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    mine = [r for r in results if not isinstance(r, list) and r.name == spec.name]
    assert len(mine) == 6
    assert len({r.container_id for r in mine}) == 1 and len({r.state["Pid"] for r in mine}) == 1
    assert sorted(o.name for o in runtime.observe_all()) == sorted([spec.name] + [s.name for s in others])

    # Stop, start and observe racing each other end in a consistent state.
    barrier = threading.Barrier(6)
    threads = [threading.Thread(target=call, args=(fn, arg)) for fn, arg in
               [(runtime.stop, spec.name), (runtime.ensure_running, spec), (runtime.observe, spec.name)] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    final = runtime.observe(spec.name)
    assert final.status in ("running", "exited")
    assert (final.state["Pid"] > 0) == (final.status == "running")


def test_second_runtime_on_the_same_state_is_refused(runtime, make_runtime):
    with pytest.raises(RuntimeError_, match="already manages host"):
        LocalRuntime(runtime.host, state_dir=runtime.state_dir.parent)
    other = make_runtime("local")  # another host in the same state root is fine
    assert other.observe_all() == []


def test_close_and_restore_like_a_daemon_restart(make_runtime):
    first = make_runtime("local")
    running, stopped = make_spec(first), make_spec(first)
    before = first.ensure_running(running)
    first.ensure_running(stopped)
    first.stop(stopped.name)
    first.close()
    assert not _alive(before.state["Pid"], None)

    second = make_runtime("local", host=first.host)
    restored = second.observe(running.name)
    assert restored.status == "running" and restored.container_id == before.container_id
    assert restored.state["Pid"] != before.state["Pid"]
    assert second.observe(stopped.name).status == "exited"
    assert second.ensure_running(running).state["Pid"] == restored.state["Pid"]  # same spec: no-op
    assert second.ensure_running(stopped).status == "running"


_KILLED_WORKER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from worker.runtimes.base import CameraSpec
    from worker.runtimes.local import LocalRuntime
    runtime = LocalRuntime({host!r}, state_dir={state!r})
    observed = runtime.ensure_running(CameraSpec(camera_id="c1", name={name!r}, host={host!r}, image="x",
                                                 rtsp_url="rtsp://127.0.0.1:9/x", command={command!r}))
    print(observed.state["Pid"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("restore", [True, False])
def test_children_of_a_killed_worker_are_cleaned_up(make_runtime, local_state_root, restore):
    host, name = unique("rt-killed"), unique("orphan")
    sleeper = [PYTHON, "-c", "import time\nwhile True: time.sleep(0.05)"]
    script = _KILLED_WORKER.format(repo=str(REPO), host=host, state=str(local_state_root), name=name,
                                   command=sleeper)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == -9, result.stderr
    orphan = int(result.stdout.strip())
    start = _proc_stat(orphan)[1]
    assert _alive(orphan, start)  # the worker died, its camera did not

    runtime = make_runtime("local", host=host, restore=restore)
    observed = runtime.observe(name)
    if restore:  # adopted: the same process, supervised by the new worker
        assert _alive(orphan, start)
        assert observed.status == "running" and observed.state["Pid"] == orphan
        runtime.stop(name)
        assert not _alive(orphan, start)
    else:  # bin/run's stop path: what a killed worker left is stopped
        assert not _alive(orphan, start)
        assert observed.status == "exited"
    record = json.loads((runtime.state_dir / name / "record.json").read_text())
    assert record["spec"]["name"] == name


def test_custom_command_string(make_runtime):
    runtime = make_runtime("local", command=f"{PYTHON} -c 'print(\"custom\", flush=True); import time; time.sleep(30)'")
    spec = make_spec(runtime)
    runtime.ensure_running(spec)
    wait_until(lambda: runtime.observe(spec.name).logs["stdout"], 10, message="output")
    assert runtime.observe(spec.name).logs["stdout"] == "Y3VzdG9tCg=="  # "custom\n"


def test_closed_runtime_refuses_new_work(make_runtime):
    runtime = make_runtime("local")
    runtime.close()
    with pytest.raises(RuntimeError_, match="closed"):
        runtime.ensure_running(make_spec(runtime))
