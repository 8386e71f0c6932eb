"""The Celery contract: queues, and one typed message per task between control plane and edge.

Each message is a frozen dataclass: its class says the task name and the queue, its fields are
the task's keyword arguments. The sender builds the message (a misspelt or missing argument
fails there, at once, not on another machine); the receiving task's signature has the same
parameters (tests/fast/test_contracts.py proves it for every task of either side).

Edge messages (control plane -> edge host) go to the host's own queue and carry ids and a spec
sealed to that host, never a URL or a secret (Flower shows task arguments). Control messages
(edge -> control plane) go to the ``control`` queue.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

CONTROL_QUEUE = "control"
# Heartbeats (hundreds a second from a fleet): their own queue, which the control worker reads in
# batches rather than as one Celery task each (processes.tasks.consume_heartbeats).
HEARTBEAT_QUEUE = "control.heartbeats"


def host_queue(host_name: str) -> str:
    """The queue an edge host consumes: named after the host."""
    return f"host.{host_name}"


@dataclass(frozen=True)
class TaskMessage:
    task: ClassVar[str]
    # The name of a dict field whose items travel as keyword arguments of their own (the task
    # takes ``**fields``), or None.
    spread: ClassVar[str | None] = None

    def kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments (shallow: the values as they are)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.spread:
            values.update(values.pop(self.spread))
        return values


@dataclass(frozen=True)
class EdgeMessage(TaskMessage):
    """A task for one edge host; every one is idempotent and names its operation."""

    operation_id: str

    @staticmethod
    def queue(host_name: str) -> str:
        return host_queue(host_name)


@dataclass(frozen=True)
class ControlMessage(TaskMessage):
    """A report to the control plane (or a beat task of it)."""

    queue: ClassVar[str] = CONTROL_QUEUE


# --- control plane -> edge host -----------------------------------------------------------------


@dataclass(frozen=True)
class EnsureRunning(EdgeMessage):
    task: ClassVar[str] = "edge.ensure_running"
    camera_name: str
    spec: str  # sealed to the host's key


@dataclass(frozen=True)
class Stop(EdgeMessage):
    task: ClassVar[str] = "edge.stop"
    camera_name: str


@dataclass(frozen=True)
class Remove(EdgeMessage):
    task: ClassVar[str] = "edge.remove"
    camera_name: str


@dataclass(frozen=True)
class PullImage(EdgeMessage):
    task: ClassVar[str] = "edge.pull_image"
    repository: str
    tag: str


@dataclass(frozen=True)
class Upgrade(EdgeMessage):
    task: ClassVar[str] = "edge.upgrade"
    camera_name: str
    spec: str  # sealed to the host's key


@dataclass(frozen=True)
class SetRecording(EdgeMessage):
    """Switch recording of a camera on its host (worker/recordings.py)."""

    task: ClassVar[str] = "edge.set_recording"
    camera_name: str
    enabled: bool
    retention_hours: float


# --- edge host -> control plane -----------------------------------------------------------------


@dataclass(frozen=True)
class OperationStarted(ControlMessage):
    task: ClassVar[str] = "processes.operation_started"
    operation_id: str


@dataclass(frozen=True)
class OperationFinished(ControlMessage):
    task: ClassVar[str] = "processes.operation_finished"
    operation_id: str
    ok: bool
    error: str = ""
    observed: dict | None = None
    stream: dict | None = None
    removed: bool = False
    result: dict | None = None


@dataclass(frozen=True)
class OperationProgress(ControlMessage):
    task: ClassVar[str] = "processes.operation_progress"
    operation_id: str
    progress: dict


@dataclass(frozen=True)
class PullFinished(ControlMessage):
    task: ClassVar[str] = "processes.pull_finished"
    operation_id: str
    ok: bool
    error: str = ""
    result: dict | None = None
    progress: dict | None = None
    images: list | None = None


@dataclass(frozen=True)
class UpgradeFinished(ControlMessage):
    task: ClassVar[str] = "processes.upgrade_finished"
    operation_id: str
    ok: bool
    error: str = ""
    observed: dict | None = None
    stream: dict | None = None
    result: dict | None = None
    progress: dict | None = None


@dataclass(frozen=True)
class HostHeartbeat(ControlMessage):
    """``report``: ``worker.edge.EdgeAgent.report``, with its fingerprint (``contracts.heartbeats``;
    a report without one, from an older edge, is fingerprinted by the control plane)."""

    task: ClassVar[str] = "processes.host_heartbeat"
    queue: ClassVar[str] = HEARTBEAT_QUEUE
    host: str
    report: dict


@dataclass(frozen=True)
class HostStarted(ControlMessage):
    task: ClassVar[str] = "processes.host_started"
    host: str
    report: dict


@dataclass(frozen=True)
class HostAlive(ControlMessage):
    task: ClassVar[str] = "processes.host_alive"
    host: str


@dataclass(frozen=True)
class RecordAnnotation(ControlMessage):
    """An event from the frame API; its fields (the AnnotateRequest's) travel as keyword arguments."""

    task: ClassVar[str] = "processes.record_annotation"
    spread: ClassVar[str | None] = "fields"
    host: str = ""
    fields: dict = dataclasses.field(default_factory=dict)


# --- control plane beat tasks -------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileFleet(ControlMessage):
    task: ClassVar[str] = "processes.reconcile_fleet"


@dataclass(frozen=True)
class ExpireOperations(ControlMessage):
    task: ClassVar[str] = "processes.expire_operations"


# --- app processes (issue 16): control plane -> edge host; results come back as OperationFinished ---


@dataclass(frozen=True)
class AppEnsureRunning(EdgeMessage):
    task: ClassVar[str] = "edge.app_ensure_running"
    app_name: str
    spec: str  # sealed to the host's key (it holds the app's secret environment values)


@dataclass(frozen=True)
class AppStop(EdgeMessage):
    task: ClassVar[str] = "edge.app_stop"
    app_name: str


@dataclass(frozen=True)
class AppRemove(EdgeMessage):
    task: ClassVar[str] = "edge.app_remove"
    app_name: str


APP_MESSAGES: tuple[type[EdgeMessage], ...] = (AppEnsureRunning, AppStop, AppRemove)
EDGE_MESSAGES: tuple[type[EdgeMessage], ...] = (EnsureRunning, Stop, Remove, PullImage, Upgrade, SetRecording,
                                                 *APP_MESSAGES)
CONTROL_MESSAGES: tuple[type[ControlMessage], ...] = (
    OperationStarted, OperationFinished, OperationProgress, PullFinished, UpgradeFinished, HostHeartbeat,
    HostStarted, HostAlive, RecordAnnotation, ReconcileFleet, ExpireOperations,
)
MESSAGES: dict[str, type[TaskMessage]] = {m.task: m for m in (*EDGE_MESSAGES, *CONTROL_MESSAGES)}


def control_message(task: str, **kwargs: Any) -> ControlMessage:
    """The control message named ``task`` with these keyword arguments (TypeError when they do not fit)."""
    message = MESSAGES.get(task)
    if message is None or not issubclass(message, ControlMessage):
        raise ValueError(f"no control task named {task!r}")
    if message.spread:
        fixed = {f.name for f in dataclasses.fields(message)} - {message.spread}
        return message(**{k: v for k, v in kwargs.items() if k in fixed},
                       **{message.spread: {k: v for k, v in kwargs.items() if k not in fixed}})
    return message(**kwargs)
