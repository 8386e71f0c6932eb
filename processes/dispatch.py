"""Sending edge tasks: only once the operation they carry is committed.

An edge host must never hear of an operation the database does not hold. A task sent inside the
transaction that creates its operation, followed by a commit that fails (the database cut the
session, or went read-only), makes the host do work nobody asked for and report about an operation
nobody knows. So the services collect their edge tasks in an ``EdgeOutbox`` while they write, and
send them after the commit.

The broker can still refuse a task after the commit. An operation a user just asked for then
ends at once, failed with ``NOT_SENT``, and what it changed on its camera or app is put back:
the request is a 503 and the camera or app is as it was (``EdgeOutbox.deliver`` with an ``undo``).
An operation the control plane started for itself (a reconcile) is left pending:
``expire_operations`` sends pending operations again once the broker takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from edgeproxy.celery import app as celery_app
from edgeproxy.contracts import tasks as messages
from edgeproxy.contracts.errors import Unavailable
from processes.events import services as events
from processes.models import ACTIVE_STATES, AppProcess, Camera, EdgeHost, Operation, OperationKind, OperationState

logger = logging.getLogger("edgeproxy.processes")

# Publishing fails fast when the broker is down: the API answers 503 rather than hanging.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

# What sending a task raises when the broker cannot take it.
BROKER_ERRORS = (KombuOperationalError, RedisConnectionError)

NOT_SENT = "not sent: the message broker (Redis) was unreachable"


def send(message: messages.EdgeMessage, host: EdgeHost) -> None:
    """Send an edge task to ``host``'s queue now; its task id is its operation's id. Only for an
    operation already committed (a new one goes through an ``EdgeOutbox``)."""
    # ``declare=[]``: Celery would declare the host's queue on every pooled broker connection before its
    # first task there (two more Redis round trips, on most connects of a fleet of many hosts). A task to a
    # direct queue is an LPUSH to the queue's list, which the host's worker reads whether or not anything
    # was declared; its worker declares the queue itself when it starts consuming.
    celery_app.send_task(message.task, kwargs=message.kwargs(), queue=host.queue, task_id=message.operation_id,
                         retry=True, retry_policy=_PUBLISH_RETRY, declare=[])


@dataclass
class EdgeOutbox:
    """Edge tasks of operations being written, sent by ``deliver`` after their transaction commits."""

    tasks: list[tuple[messages.EdgeMessage, EdgeHost]] = field(default_factory=list)

    def add(self, message: messages.EdgeMessage, host: EdgeHost) -> None:
        self.tasks.append((message, host))

    def deliver(self, undo: Callable[[list[str]], None] | None = None, what: str = "the change") -> list[str]:
        """Send every task, in order, and answer the operation ids the broker refused (once it refuses
        one, the rest are not tried: each try waits). With ``undo``, refused operations are undone by
        it and the caller gets ``Unavailable`` (503) when none was sent; without, they stay pending
        and are sent again later."""
        for index, (message, host) in enumerate(self.tasks):
            try:
                send(message, host)
            except BROKER_ERRORS as exc:
                refused = [m.operation_id for m, _ in self.tasks[index:]]
                logger.warning("broker unreachable: %d edge task(s) not sent (%s): %s", len(refused),
                               ", ".join(refused), exc)
                break
        else:
            return []
        if undo is None:
            return refused
        undo(refused)
        if len(refused) == len(self.tasks):
            raise Unavailable(f"The message broker (Redis) is unreachable; {what} was not sent to the edge host "
                              "and nothing changed.")
        return refused


def fail_refused(operation_ids: list[str], restore: dict | None = None) -> None:
    """``undo`` for operations whose task was refused: each ends failed with ``NOT_SENT``, and its
    camera or app gets back the field values in ``restore`` (what it had before the request) while
    that operation is still its last one."""
    now = timezone.now()
    with transaction.atomic():
        for op in Operation.objects.select_related("host").filter(id__in=operation_ids,
                                                                  state=OperationState.PENDING):
            # The camera (or app) first, as _new_operation locks them: the other order can deadlock.
            if restore and op.camera_id:
                Camera.objects.filter(id=op.camera_id, last_operation_id=op.id).update(**restore, modified=now)
            elif restore and op.app_id:
                AppProcess.objects.filter(id=op.app_id, last_operation_id=op.id).update(**restore, modified=now)
            if Operation.objects.filter(id=op.id, state=OperationState.PENDING).update(
                    state=OperationState.FAILED, error=NOT_SENT, started=now, finished=now):
                op.state, op.error, op.started, op.finished = OperationState.FAILED, NOT_SENT, now, now
                events.operation_finished(op)


# --- a delete cuts short what it makes pointless ---------------------------------------------------

# Operations a delete cuts short, so that a user can always delete a camera or an app: their edge
# tasks are idempotent, and the remove queued after them leaves nothing behind (a process or
# container one of them starts late has no record any more: reconciliation removes it as a stray).
# Upgrades and moves are not cut short (they end within their deadline, restoring what ran before);
# a delete under way is the answer to another delete.
SUPERSEDED_BY_DELETE = (OperationKind.CONNECT, OperationKind.START, OperationKind.STOP, OperationKind.RECONCILE)


def supersede_for_delete(operations: QuerySet[Operation], delete_op_id) -> None:
    """End the active operations of ``operations`` (a camera's or an app's, its row locked by the
    caller) that a delete supersedes: failed, "superseded by delete operation <id>", each with its
    ``operation.finished`` event. Their late results change nothing (the operation has ended)."""
    now = timezone.now()
    superseded = list(operations.filter(state__in=ACTIVE_STATES, kind__in=SUPERSEDED_BY_DELETE)
                      .values_list("id", flat=True))  # stable: their results lock the camera or app row first
    Operation.objects.filter(id__in=superseded).update(
        state=OperationState.FAILED, error=f"superseded by delete operation {delete_op_id}", finished=now,
        started=Coalesce(F("started"), now))
    for ended in Operation.objects.select_related("host").filter(id__in=superseded):
        events.operation_finished(ended)
