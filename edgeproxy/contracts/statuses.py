"""Status names, and the rule that turns a camera whose host is silent into "offline"."""

from datetime import datetime, timedelta
from enum import StrEnum


class CameraStatus(StrEnum):
    """A camera's ``status`` as the API shows it: the runtime's own states, then ours."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"
    PENDING = "pending"
    STOPPED = "stopped"
    ERROR = "error"
    OFFLINE = "offline"


# A process in one of these states exists and runs (or will go on running by itself).
RUNNING_STATUSES = (CameraStatus.RUNNING, CameraStatus.RESTARTING, CameraStatus.PAUSED)
# A process in one of these states has ended: for a camera that should be stopped, it is stopped.
ENDED_STATUSES = (CameraStatus.EXITED, CameraStatus.CREATED, CameraStatus.DEAD)
# Statuses that need a look (the dashboard's problem list).
BAD_STATUSES = (CameraStatus.ERROR, CameraStatus.DEAD, CameraStatus.OFFLINE)
# Statuses in which a camera cannot be streaming, whatever its last stream report said.
NOT_STREAMING_STATUSES = (CameraStatus.OFFLINE, CameraStatus.STOPPED, CameraStatus.EXITED, CameraStatus.DEAD,
                          CameraStatus.REMOVING)


class DesiredState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class OperationKind(StrEnum):
    CONNECT = "connect"
    START = "start"
    STOP = "stop"
    DELETE = "delete"
    RECONCILE = "reconcile"
    PULL = "pull"
    UPGRADE = "upgrade"
    MOVE = "move"
    RECORDING = "recording"


class OperationState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_STATES = (OperationState.PENDING, OperationState.RUNNING)


def online_window(heartbeat_seconds: float, offline_after_beats: float) -> timedelta:
    """How long a host stays online after its last heartbeat."""
    return timedelta(seconds=heartbeat_seconds * offline_after_beats)


def host_is_online(last_heartbeat: datetime | None, cutoff: datetime) -> bool:
    """A host is online when it beat at or after ``cutoff`` (now minus the online window)."""
    return last_heartbeat is not None and last_heartbeat >= cutoff


def shown_status(stored: str, host_online: bool) -> str:
    """The status the API shows: the stored one, or "offline" when the camera's host is silent.
    A pending camera stays pending (its operation's deadline says what became of it)."""
    if not host_online and stored != CameraStatus.PENDING:
        return CameraStatus.OFFLINE.value
    return stored


# The observed state of a camera process, as edge hosts report it: Docker's ContainerState keys
# (the local runtime reports the same), and the time Docker shows for "never".
STATE_KEYS = ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
              "Error", "StartedAt", "FinishedAt")
ZERO_TIME = "0001-01-01T00:00:00Z"
