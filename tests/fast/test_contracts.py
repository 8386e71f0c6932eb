"""The contracts layer (edgeproxy.contracts): pure rules, the task messages of both sides, and how
the API answers each domain error. No database, no broker, no running system."""

import dataclasses
import inspect
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeproxy.contracts import errors, names, statuses
from edgeproxy.contracts import tasks as messages

REPO = Path(__file__).resolve().parents[2]


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cam", "front-door", "a_1", "0ab", "x" * 63])
def test_camera_names_a_user_may_choose(name):
    assert names.is_camera_name(name)
    assert names.is_edge_name(name), "the edge must accept every name the control plane lets through"


@pytest.mark.parametrize("name", ["ab", "x" * 64, "Front", "-cam", "_cam", "cam.1", "cam/../x", "cam 1", "cam\n",
                                  "", "kamera-ü"])
def test_camera_names_refused(name):
    assert not names.is_camera_name(name)


@pytest.mark.parametrize("name", ["", ".hidden", "../x", "a/b", "a b", "cam\n", "x" * 129, "-x"])
def test_edge_names_refused(name):
    assert not names.is_edge_name(name)


@pytest.mark.parametrize("image", ["edgeproxy/camera:0.0.10", "127.0.0.1:5000/edgeproxy/camera:dev", "camera:latest",
                                   "registry.example.com/a/b_c:1.2.3-rc1"])
def test_image_references(image):
    assert names.is_image(image)


@pytest.mark.parametrize("image", ["edgeproxy/camera", "edgeproxy/camera:", "edgeproxy/Camera:1", "a/../b:1",
                                   "a//b:1", "camera:.x", "camera:" + "1" * 129])
def test_image_references_refused(image):
    assert not names.is_image(image)


@pytest.mark.parametrize(("image", "parts"), [
    ("edgeproxy/camera:0.0.9", ("edgeproxy/camera", "0.0.9")),
    ("edgeproxy/camera", ("edgeproxy/camera", "")),
    ("127.0.0.1:5000/edgeproxy/camera", ("127.0.0.1:5000/edgeproxy/camera", "")),
    ("127.0.0.1:5000/edgeproxy/camera:1", ("127.0.0.1:5000/edgeproxy/camera", "1")),
])
def test_split_image(image, parts):
    assert names.split_image(image) == parts


def test_registry_url_rule():
    assert names.REGISTRY_URL_RULE.fullmatch("http://127.0.0.1:5000")
    assert names.REGISTRY_URL_RULE.fullmatch("https://registry.example.com/")
    for bad in ("ftp://x", "http://user:pw@x", "http://x/path", "http://x:65536"):
        assert not names.REGISTRY_URL_RULE.fullmatch(bad), bad


# --- statuses and the offline rule -------------------------------------------------------------


def test_a_silent_host_shows_its_cameras_offline_except_pending_ones():
    for status in statuses.CameraStatus:
        shown = statuses.shown_status(status.value, host_online=False)
        expected = "pending" if status == statuses.CameraStatus.PENDING else "offline"
        assert shown == expected, status
        assert statuses.shown_status(status.value, host_online=True) == status.value


def test_host_online_window():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    window = statuses.online_window(heartbeat_seconds=2.0, offline_after_beats=3)
    assert window == timedelta(seconds=6)
    cutoff = now - window
    assert statuses.host_is_online(cutoff, cutoff)
    assert statuses.host_is_online(now, cutoff)
    assert not statuses.host_is_online(cutoff - timedelta(microseconds=1), cutoff)
    assert not statuses.host_is_online(None, cutoff)


def test_status_names_are_plain_strings_on_the_wire():
    import json

    assert json.dumps({"status": statuses.CameraStatus.OFFLINE}) == '{"status": "offline"}'
    assert statuses.CameraStatus.RUNNING == "running"
    assert f"{statuses.OperationState.FAILED}" == "failed"


def test_django_choices_are_the_contract_enums():
    from processes.models import DesiredState, OperationKind, OperationState

    for choices, contract in ((DesiredState, statuses.DesiredState), (OperationKind, statuses.OperationKind),
                              (OperationState, statuses.OperationState)):
        assert [(m.name, m.value) for m in choices] == [(m.name, m.value) for m in contract]


# --- domain errors and the API's answers -------------------------------------------------------


def test_domain_errors_carry_no_http_code():
    for cls in (errors.Invalid, errors.NotFound, errors.Conflict, errors.Busy, errors.Unavailable, errors.TimedOut,
                errors.NotSupported, errors.ImageNotOnHost):
        assert issubclass(cls, errors.DomainError)
        assert not hasattr(cls, "status_code")


def test_invalid_names_its_field():
    exc = errors.Invalid("wait: must be a number.", field="wait")
    assert exc.errors == {"wait": ["wait: must be a number."]}
    assert exc.field == "wait"


@pytest.mark.parametrize(("exc", "code"), [
    (errors.Invalid("x"), 400), (errors.NotFound("x"), 404), (errors.Conflict("x"), 409), (errors.Busy("x"), 409),
    (errors.ImageNotOnHost("x.", "a/b", "1"), 409), (errors.NotSupported("x"), 501), (errors.Unavailable("x"), 503),
    (errors.TimedOut("x"), 504),
])
def test_the_api_answers_each_domain_error_with_its_status(exc, code):
    from edgeproxy.api.errors import status_code_of

    assert status_code_of(exc) == code


def test_the_api_names_the_pull_route_for_a_missing_image():
    from edgeproxy.api.errors import api_message

    exc = errors.ImageNotOnHost("Image a/b:2 is not on edge host h; versions there: 1. Pull it first.", "a/b", "2")
    assert "GET /" not in exc.message, "services do not name API routes"
    assert api_message(exc) == ("Image a/b:2 is not on edge host h; versions there: 1. Pull it first "
                                "(GET /api/v1/dockerpull?tag=a/b&version=2).")


# --- task messages -----------------------------------------------------------------------------


def _registered_tasks() -> dict:
    import processes.tasks  # noqa: F401 - registers the control tasks
    import worker.tasks  # noqa: F401 - registers the edge tasks
    from edgeproxy.celery import app

    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_of_either_side_has_its_message_and_every_message_its_task():
    registered = _registered_tasks()
    assert set(registered) == set(messages.MESSAGES)


@pytest.mark.parametrize("message", list(messages.MESSAGES.values()), ids=lambda m: m.task)
def test_each_task_takes_exactly_its_messages_keyword_arguments(message):
    task = _registered_tasks()[message.task]
    parameters = inspect.signature(task.run).parameters
    fields = {f.name: f for f in dataclasses.fields(message)}
    if message.spread:
        assert [p.kind for p in parameters.values()][-1] is inspect.Parameter.VAR_KEYWORD
        fields.pop(message.spread)
        parameters = {n: p for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert list(parameters) == list(fields), "the same keyword arguments, in the same order"
    for name, field in fields.items():
        parameter = parameters[name]
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        assert (parameter.default is not inspect.Parameter.empty) == has_default, name
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default, name


def test_messages_go_to_their_queues():
    assert messages.EnsureRunning.queue("edge-a") == "host.edge-a" == messages.host_queue("edge-a")
    for message in messages.CONTROL_MESSAGES:
        expected = messages.HEARTBEAT_QUEUE if message is messages.HostHeartbeat else messages.CONTROL_QUEUE
        assert message.queue == expected
    assert (messages.CONTROL_QUEUE, messages.HEARTBEAT_QUEUE) == ("control", "control.heartbeats")


def test_a_message_is_its_tasks_keyword_arguments():
    message = messages.OperationFinished(operation_id="op", ok=True, removed=True)
    assert message.kwargs() == {"operation_id": "op", "ok": True, "error": "", "observed": None, "stream": None,
                                "removed": True, "result": None}
    assert messages.Stop(operation_id="op", camera_name="cam").kwargs() == {"operation_id": "op",
                                                                             "camera_name": "cam"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.ok = False  # type: ignore[misc]


def test_a_misspelt_or_missing_argument_fails_at_the_sender():
    with pytest.raises(TypeError):
        messages.Stop(operation_id="op", camera="cam")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        messages.control_message("processes.operation_progress", operation_id="op")
    with pytest.raises(ValueError):
        messages.control_message("edge.stop", operation_id="op", camera_name="cam")  # not a control task
    assert messages.control_message("processes.host_alive", host="h") == messages.HostAlive(host="h")


def test_annotation_fields_travel_as_keyword_arguments():
    message = messages.control_message("processes.record_annotation", host="edge-a", device_name="cam",
                                       type="motion", start_timestamp=1)
    assert message == messages.RecordAnnotation(host="edge-a", fields={"device_name": "cam", "type": "motion",
                                                                       "start_timestamp": 1})
    assert message.kwargs() == {"host": "edge-a", "device_name": "cam", "type": "motion", "start_timestamp": 1}


# --- independence --------------------------------------------------------------------------------


def test_the_contracts_import_neither_django_nor_celery_nor_the_project():
    code = ("import sys; import edgeproxy.contracts.errors, edgeproxy.contracts.names, edgeproxy.contracts.statuses, "
            "edgeproxy.contracts.tasks, edgeproxy.contracts.times; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('django', 'celery', 'kombu', 'rest_framework', 'redis', 'processes', 'settings_app', 'worker') "
            "or (m.startswith('edgeproxy.') and not m.startswith('edgeproxy.contracts'))); print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
