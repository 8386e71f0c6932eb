"""Image upgrades of one camera on its edge host (never touches the database).

The camera's container is stopped and set aside as it is; a new one from the same camera spec
with the new image starts under the camera's name; then the gate:

- the new camera process reports ``streaming`` on the frame bus (its status key, written after it
  started), required when the camera was streaming before the upgrade;
- otherwise (its RTSP source is down) it runs steadily, not restarting or exited, for
  ``EDGEPROXY_UPGRADE_STEADY_SECONDS``;
- it fails at once when the container exits or restarts, and at ``EDGEPROXY_UPGRADE_TIMEOUT_SECONDS``.

Passed: the old container is removed and the result names the new image (the control plane then
changes the camera's ``image_tag``). Failed: the new container is removed and the old one runs
again, the same container, and the operation says why. Redelivery is safe: an interrupted upgrade
is first put back, a finished one is recognised (the camera already runs the new spec).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from worker.camera import keys
from worker.redaction import redact
from worker.runtimes.base import Observed, RuntimeError_

logger = logging.getLogger("edgeproxy.edge")


@dataclass
class Gate:
    require_stream: bool
    steady_seconds: float
    timeout_seconds: float
    poll_seconds: float = 0.2


def _last_line(observed: Observed | None) -> str:
    """The last line the camera printed (stderr first), redacted and short."""
    if observed is None or not observed.logs:
        return ""
    for stream in ("stderr", "stdout"):
        data = observed.logs.get(stream)
        if not data:
            continue
        lines = [ln.strip() for ln in base64.b64decode(data).decode("utf-8", "replace").splitlines() if ln.strip()]
        if lines:
            line = redact(lines[-1])
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def _stream(frames: redis.Redis, name: str) -> dict | None:
    try:
        raw = frames.get(keys.status(name))
        return json.loads(raw) if raw else None
    except (redis.RedisError, ValueError):
        return None


def wait_gate(runtime, frames: redis.Redis, name: str, started_ms: int, gate: Gate) -> str | None:
    """None when the new camera process passed the gate, else why it did not (one clause)."""
    began = time.monotonic()
    deadline = began + gate.timeout_seconds
    first_started = None
    steady_since = None
    stream = None
    while True:
        observed = runtime.observe(name, with_logs=False)
        if observed is None:
            return "its container disappeared"
        state = observed.state or {}
        if first_started is None:
            first_started = state.get("StartedAt")
        crashed = (observed.status in ("exited", "dead") or state.get("Restarting") or observed.restarts > 0
                   or state.get("StartedAt") != first_started)
        if crashed:
            return _crash_reason(runtime, name, observed)
        stream = _stream(frames, name)
        if stream and stream.get("state") == "streaming" and (stream.get("started_at") or 0) >= started_ms:
            return None
        now = time.monotonic()
        if observed.status == "running" and not state.get("Restarting"):
            steady_since = steady_since or now
            if not gate.require_stream and now - steady_since >= gate.steady_seconds:
                return None
        else:
            steady_since = None
        if now >= deadline:
            what = "stream" if gate.require_stream else "run steadily"
            detail = ""
            if stream:
                detail = f" (stream state {stream.get('state')}"
                if stream.get("last_error"):
                    detail += f", last error: {redact(str(stream['last_error']))[:200]}"
                detail += ")"
            return f"it did not {what} within {gate.timeout_seconds:g} s{detail}"
        time.sleep(gate.poll_seconds)


def _crash_reason(runtime, name: str, observed: Observed) -> str:
    # Between restarts Docker shows the exit code; while running again it may show 0.
    code = observed.state.get("ExitCode")
    until = time.monotonic() + 2.0
    while not code and time.monotonic() < until:
        time.sleep(0.1)
        again = runtime.observe(name, with_logs=False)
        if again is None:
            break
        if again.status in ("exited", "dead") or again.state.get("Restarting"):
            code = again.state.get("ExitCode")
            break
    reason = "its camera process exited" + (f" with code {code}" if code else "")
    if observed.restarts:
        reason += " (restarted once)" if observed.restarts == 1 else f" (restarted {observed.restarts} times)"
    last = _last_line(runtime.observe(name, with_logs=True))
    if last:
        reason += f"; last output: {last}"
    return reason


class _Report:
    def __init__(self, agent, operation_id: str, camera_name: str):
        self.agent, self.operation_id, self.camera_name = agent, operation_id, camera_name
        self.seq = 0
        self.base: dict = {}

    def _next(self) -> int:
        # Rises within an upgrade and across repeated deliveries of it (microseconds of wall clock).
        self.seq = max(self.seq + 1, time.time_ns() // 1000)
        return self.seq

    def progress(self, phase: str, **extra) -> dict:
        self._next()
        body = {"seq": self.seq, "phase": phase, **self.base, **extra}
        self.agent.report_progress(self.operation_id, body)
        return body

    def finished(self, ok: bool, phase: str, error: str = "", observed: Observed | None = None,
                 result: dict | None = None) -> None:
        self._next()
        self.agent.report_upgrade_finished(self.operation_id, ok, error, observed, result or {},
                                           {"seq": self.seq, "phase": phase, **self.base})


def upgrade(agent, operation_id: str, camera_name: str, sealed_spec: str) -> None:
    """Run one upgrade operation (the ``edge.upgrade`` task)."""
    if not agent.claim_upgrade(camera_name, operation_id):
        logger.info("camera %s: upgrade %s already in progress here", camera_name, operation_id)
        return  # a redelivery of the upgrade this worker is doing: that one reports
    report = _Report(agent, operation_id, camera_name)
    try:
        _upgrade(agent, report, camera_name, sealed_spec)
    except Exception:
        logger.exception("camera %s: upgrade %s failed unexpectedly", camera_name, operation_id)
        observed = None
        try:
            observed = agent.runtime.rollback_replace(camera_name)
        except Exception:  # noqa: BLE001 - reported below; the next operation restores it
            logger.warning("camera %s: old container not restored after the failure", camera_name)
        report.finished(False, "failed", f"internal error on edge host {agent.host} while upgrading camera "
                        f"{camera_name}; its log has the details", observed)
    finally:
        agent.release_upgrade(camera_name, operation_id)


def _upgrade(agent, report: _Report, camera_name: str, sealed_spec: str) -> None:
    agent.report_started(report.operation_id)
    runtime = agent.runtime
    spec = agent.open_spec(sealed_spec)
    if spec is None:  # sealed to another key (the host key was replaced)
        report.finished(False, "failed", f"camera {camera_name}: the spec could not be opened with this host's key",
                        agent.observe(camera_name))
        return
    before = agent.observe(camera_name)
    report.base = {"image": spec.image, "from": before.image if before else ""}
    was_streaming = (_stream(agent.frames, camera_name) or {}).get("state") == "streaming"
    gate = Gate(require_stream=was_streaming, steady_seconds=settings.EDGEPROXY_UPGRADE_STEADY_SECONDS,
                timeout_seconds=settings.EDGEPROXY_UPGRADE_TIMEOUT_SECONDS)
    report.progress("replacing")
    try:
        swap = runtime.begin_replace(spec)
    except RuntimeError_ as exc:
        logger.warning("camera %s: upgrade to %s not started: %s", camera_name, spec.image, exc)
        report.finished(False, "failed", f"camera {camera_name} was not upgraded to {spec.image}: {exc}",
                        agent.observe(camera_name))
        return
    old, new = swap["old"], swap["new"]
    agent.publish_host_table()
    report.progress("checking", waiting_for="streaming" if gate.require_stream else
                    f"{gate.steady_seconds:g} s of steady running", container_id=new.container_id)
    reason = wait_gate(runtime, agent.frames, camera_name, swap["started_ms"], gate)
    if reason is None:
        report.progress("committing", container_id=new.container_id)
        runtime.commit_replace(camera_name)
        observed = agent.observe(camera_name) or new
        result = {"image": spec.image, "previous_image": old.image if old else report.base["from"],
                  "container_id": observed.container_id,
                  "replaced_container_id": old.container_id if old else None}
        logger.info("camera %s: upgraded to %s (container %s)", camera_name, spec.image, observed.container_id[:12])
        report.finished(True, "done", observed=observed, result=result)
    else:
        report.progress("rolling back", reason=reason)
        observed = runtime.rollback_replace(camera_name)
        back_on = old.image if old else report.base["from"]
        error = (f"camera {camera_name} was not upgraded to {spec.image}: {reason}. It runs again on {back_on} "
                 "in its old container.")
        logger.warning("%s", error)
        report.finished(False, "rolled back", error, observed,
                        result={"rejected_image": spec.image, "restored_image": back_on,
                                "container_id": observed.container_id if observed else None})
    agent.publish_host_table()
