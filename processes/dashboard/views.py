"""The dashboard: server-rendered pages behind the Django session login (thin views).

Reads go through ``processes.dashboard.selectors``, writes through ``processes.services``. A
service's domain error (``edgeproxy.contracts.errors``) becomes a message on the page, never an
error page; who may change things and how an outage is told are ``edgeproxy.policy``'s, as for the
API. Pages that change while one looks at them (hosts, cameras, operations) are re-rendered as fragments
(``?partial=<name>``) that ``dashboard.js`` swaps in every couple of seconds.
"""

import logging

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from edgeproxy.api.errors import error_body, first_error_sentence, status_code_of
from edgeproxy.contracts.errors import DomainError
from edgeproxy.contracts.names import CAMERA_NAME_HELP, IMAGE_HELP, IMAGE_RULE, split_image
from edgeproxy.policy import outage_message, user_may_change
from processes import selectors as process_selectors
from processes import services
from processes.api import ConnectSerializer
from processes.dashboard import fleet, selectors

logger = logging.getLogger("edgeproxy.dashboard")


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "dashboard:login"


def _page(request, template: str, context: dict, partials: dict[str, str] | None = None) -> HttpResponse:
    """The whole page, or with ``?partial=<name>`` only that fragment (for the live refresh)."""
    partial = request.GET.get("partial")
    if partial:
        if not partials or partial not in partials:
            raise Http404("no such fragment")
        response = render(request, partials[partial], context)
    else:
        response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


def _may_change(request) -> bool:
    return user_may_change(request.user)


def _run(request, what: str, action, errors: dict | None = None) -> bool:
    """Call a service; its refusal (or a broker or database outage) becomes an error message,
    and its field errors, if any, go into ``errors``."""
    if not _may_change(request):
        messages.error(request, "Your account may only look, not change anything.")
        return False
    try:
        action()
    except DomainError as exc:
        messages.error(request, exc.message)
        if errors is not None and exc.errors:
            errors.update({field: [str(m) for m in msgs] for field, msgs in exc.errors.items()})
        return False
    except Exception as exc:
        outage = outage_message(exc)
        if outage is None:
            raise
        logger.warning("dashboard %s: %s", what, exc)
        messages.error(request, outage)
        return False
    return True


# --- pages -------------------------------------------------------------------------------------


@never_cache
@login_required
@require_GET
def overview(request):
    """One page of the fleet (``processes.dashboard.fleet``); ``?partial=changes&since=<token>``: only what
    changed since the browser's token (JSON, or 204 when nothing did)."""
    filterset = fleet.camera_filters(request.GET)
    valid = filterset.is_valid()
    partial = request.GET.get("partial")
    if partial == "changes":
        since = request.GET.get("since", "")
        if not valid or not fleet.TOKEN_RULE.fullmatch(since):
            sentence, errors = first_error_sentence(filterset.errors) if not valid else (
                "since: must be the token of the fleet page's last refresh.", {"since": ["malformed token"]})
            return JsonResponse(error_body(400, sentence, errors), status=400)
        changes = fleet.build(request.GET, filterset).changes_since(since)
        response = HttpResponse(status=204) if changes is None else JsonResponse(changes)
        response["Cache-Control"] = "no-store"
        return response
    if partial:
        raise Http404("no such fragment")
    if not valid:
        messages.error(request, first_error_sentence(filterset.errors)[0])
    view = fleet.build(request.GET, filterset)
    context = {"fleet": {"token": view.token,
                         "fragments": {name.replace("-", "_"): mark_safe(html)  # noqa: S308 - rendered templates
                                       for name, html in view.fragments.items()}},
               "form": fleet.form_values(request.GET), "query": fleet.filter_query(request.GET).urlencode(),
               "page_number": request.GET.get("page", ""), "nav": "fleet"}
    response = render(request, "dashboard/overview.html", context, status=200 if valid else 400)
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@login_required
def camera_detail(request, name):
    camera = process_selectors.camera_by_name(name)
    if camera is None:
        messages.error(request, f"No camera named {name!r}: it may have been deleted.")
        return redirect("dashboard:overview")
    context = {"camera": selectors.camera_detail(camera), "nav": "fleet"}
    return _page(request, "dashboard/camera.html", context,
                 {"status": "dashboard/_camera_status.html", "history": "dashboard/_camera_history.html",
                  "logs": "dashboard/_camera_logs.html"})


@never_cache
@login_required
def connect(request):
    hosts = selectors.host_names()
    values = {"name": "", "rtsp_endpoint": "", "rtmp_endpoint": "", "host": "", "image_tag": "",
              "rtsp_transport": "tcp"}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values.update({k: request.POST.get(k, "") for k in values})
        data = {k: v for k, v in values.items() if v != "" or k in ("name", "rtsp_endpoint")}
        serializer = ConnectSerializer(data=data)
        if serializer.is_valid():
            created = {}

            def connect_it():
                created["camera"] = services.connect_camera(**serializer.validated_data)

            if _run(request, "connect", connect_it, errors):
                name = created["camera"].name
                messages.success(request, f"Camera {name} is being connected on host {created['camera'].host.name}.")
                return redirect("dashboard:camera", name=name)
        else:
            sentence, errors = first_error_sentence(serializer.errors)  # the API's sentence for it
            messages.error(request, sentence)
    elif request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "dashboard/connect.html",
                  {"values": values, "errors": errors, "hosts": hosts, "nav": "connect", "name_help": CAMERA_NAME_HELP},
                  status=400 if errors else 200)


@never_cache
@login_required
@require_GET
def operations(request):
    return _page(request, "dashboard/operations.html", {"ops": selectors.operations(), "nav": "operations"},
                 {"operations": "dashboard/_operations.html"})


@never_cache
@login_required
@require_GET
def settings_page(request):
    context = {"overview": selectors.settings_overview(request.get_host(), request.is_secure()), "nav": "settings"}
    return render(request, "dashboard/settings.html", context)


@never_cache
@login_required
@require_GET
def snapshot(request, name):
    """The camera's newest frame (JPEG) for the session. When there is none, the reason as plain
    text with status 200 (and its HTTP status in ``X-Snapshot-Status``): pages poll this every
    second, and a camera that is down must not write an error line to the log each time."""
    camera = process_selectors.camera_by_name(name)
    if camera is None:
        return HttpResponse(f"No camera named {name!r}.", status=404, content_type="text/plain; charset=utf-8")
    reason = selectors.snapshot_unavailable(camera)
    if reason is None:
        try:
            jpeg = services.camera_snapshot(camera)
        except DomainError as exc:
            reason, status = exc.message, status_code_of(exc)
    else:
        status = 503
    if reason is not None:
        response = HttpResponse(reason, content_type="text/plain; charset=utf-8")
        response["X-Snapshot-Status"] = str(status)
        response["Cache-Control"] = "no-store"
        return response
    response = HttpResponse(jpeg, content_type="image/jpeg")
    response["Cache-Control"] = "no-store"
    return response


# --- camera actions (POST forms) ----------------------------------------------------------------


ACTIONS = {
    "stop": ("Stopping", services.stop_camera),
    "start": ("Starting", services.start_camera),
    "delete": ("Deleting", services.delete_camera),
}


@login_required
@require_POST
def camera_action(request, name, action):
    camera = process_selectors.camera_by_name(name)
    if camera is None:
        messages.error(request, f"No camera named {name!r}: it may have been deleted.")
        return redirect("dashboard:overview")
    if action == "upgrade":
        version = request.POST.get("version", "").strip() or None  # none: the newest local version
        if _run(request, "upgrade", lambda: services.upgrade_camera(camera, newer_version=version)):
            messages.success(request, f"Upgrading camera {name}" + (f" to {version}." if version else "."))
        return redirect("dashboard:camera", name=name)
    if action not in ACTIONS:
        raise Http404("no such action")
    verb, service = ACTIONS[action]
    if _run(request, action, lambda: service(camera)):
        messages.success(request, f"{verb} camera {name}.")
        if action == "delete":
            return redirect("dashboard:overview")
    return redirect("dashboard:camera", name=name)


@login_required
@require_POST
def pull(request):
    """Pull an image on one host or every online host (one ``pull`` operation per host)."""
    image = request.POST.get("image", "").strip()
    host = request.POST.get("host", "").strip() or None
    if not IMAGE_RULE.fullmatch(image):
        messages.error(request, f"image: must be {IMAGE_HELP}.")
        return redirect("dashboard:settings")
    repository, version = split_image(image)
    started = {}

    def pull_it():
        started["ops"] = services.pull_image(repository, version, host)

    if _run(request, "pull", pull_it):
        count = len(started["ops"])
        messages.success(request, f"Pulling {image} on {count} host{'s' if count != 1 else ''}.")
        return redirect("dashboard:operations")
    return redirect("dashboard:settings")


@never_cache
@login_required
@require_GET
def webhooks_page(request):
    """Webhooks and their recent deliveries (issue 17; docs/events.md)."""
    from processes.events import selectors as events

    hooks = []
    failed = events.delivery_totals()["failed_attempts"]
    for hook in events.webhooks():
        counts = events.delivery_counts(hook.id)
        hooks.append({"url": hook.url, "event_types": hook.event_types, "enabled": hook.enabled,
                      "delivered": counts.get("delivered", 0), "pending": counts.get("pending", 0),
                      "failed_attempts": failed.get(str(hook.id), 0)})
    context = {"hooks": hooks, "deliveries": events.recent_deliveries(30), "nav": "webhooks"}
    return _page(request, "dashboard/webhooks.html", context, {"webhooks": "dashboard/_webhooks.html"})
