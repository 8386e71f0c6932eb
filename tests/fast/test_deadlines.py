"""Operations nobody answers (services.expire_operations, run by beat): sent again while the host is
online, ended with what happened once past their deadline."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from processes import services
from processes.models import Camera, Operation
from tests.fast.conftest import make_offline
from tests.fast.test_cameras import RUNNING, connect, finish


def age(operation_id: str, seconds: float) -> None:
    """Make the operation ``seconds`` old."""
    Operation.objects.filter(id=operation_id).update(created=timezone.now() - timedelta(seconds=seconds))


def test_a_pending_operation_is_sent_again_to_an_online_host(api, online_host, broker):
    op_id = connect(api).json()["operation"]["id"]
    assert services.expire_operations() == 0  # young: nothing to do
    age(op_id, settings.EDGEPROXY_OPERATION_DEADLINE_SECONDS / 2)
    assert services.expire_operations() == 1
    first, again = broker.host_messages("edge-a")
    assert again.task == first.task == "edge.ensure_running" and again.id == first.id == op_id
    assert Operation.objects.get(id=op_id).progress["sent_again"] == 1
    assert services.expire_operations() == 0  # not again before another third of the deadline


def test_past_its_deadline_an_operation_fails_saying_the_host_is_offline(api, online_host, broker):
    op_id = connect(api).json()["operation"]["id"]
    make_offline(online_host)
    age(op_id, settings.EDGEPROXY_OPERATION_DEADLINE_SECONDS + 1)
    assert services.expire_operations() == 1
    task = api.get(f"/api/v1/tasks/{op_id}").json()
    assert task["state"] == "failed" and "edge host edge-a is offline" in task["error"]
    # The camera is no longer busy: a stop is taken.
    assert api.post("/api/v1/process/front-door/stop").status_code == 202


def test_a_delete_past_its_deadline_on_an_offline_host_deletes_the_record(api, online_host, broker):
    connect(api)
    finish("front-door", observed=RUNNING)
    op_id = api.delete("/api/v1/process/front-door").json()["operation"]["id"]
    make_offline(online_host)
    age(op_id, settings.EDGEPROXY_OPERATION_DEADLINE_SECONDS + 1)
    services.expire_operations()
    assert not Camera.objects.exists()
    task = api.get(f"/api/v1/tasks/{op_id}").json()
    assert task["state"] == "succeeded" and "removed when the host returns" in task["message"]


def test_a_late_result_after_the_deadline_is_told_in_the_error(api, online_host, broker):
    op_id = connect(api).json()["operation"]["id"]
    services.record_operation_started(op_id)
    age(op_id, settings.EDGEPROXY_OPERATION_DEADLINE_SECONDS + 1)
    services.expire_operations()
    assert "reported no result" in api.get(f"/api/v1/tasks/{op_id}").json()["error"]
    services.record_operation_result(op_id, True, observed=RUNNING)
    task = api.get(f"/api/v1/tasks/{op_id}").json()
    assert task["state"] == "failed" and "its result came" in task["error"] and task["error"].endswith("succeeded")
    assert api.get("/api/v1/process/front-door").json()["status"] == "running"
