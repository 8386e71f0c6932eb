"""Dashboard pages of app processes (issue 16): the list (per host), one app with its logs, and
its stop, start and delete buttons. Reads through processes.app_selectors, writes through
processes.app_services, refusals told on the page like the camera pages'."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from edgeproxy.contracts.statuses import BAD_STATUSES, RUNNING_STATUSES, shown_status
from processes import app_selectors, app_services
from processes.app_outputs import masked_env
from processes.dashboard.selectors import decode_log
from processes.dashboard.views import _page, _run


def _tone(status: str) -> str:
    if status in BAD_STATUSES:
        return "bad"
    return "ok" if status in RUNNING_STATUSES else "warn"


def app_view(app) -> dict:
    """What the pages show of one app."""
    status = shown_status(app.status, app.host.is_online)
    logs = app.logs or {}
    op = app.last_operation
    return {
        "name": app.name, "image": app.image, "host": app.host.name, "host_online": app.host.is_online,
        "cameras": app.cameras or [], "status": status, "tone": _tone(status), "desired_state": app.desired_state,
        "state": app.state or {}, "cpus": app.cpus, "memory_mb": app.memory_mb, "runtime": app.runtime,
        "env": masked_env(app), "mount": app.mount or [], "port_mappings": app.port_mappings or [],
        "stdout": decode_log(logs.get("stdout")), "stderr": decode_log(logs.get("stderr")),
        "operation": None if op is None else {"kind": op.kind, "state": op.state, "error": op.error,
                                               "active": op.is_active},
    }


@never_cache
@login_required
@require_GET
def app_list(request):
    host = request.GET.get("host") or None
    apps = [app_view(app) for app in app_selectors.apps(host=host)]
    return _page(request, "dashboard/apps.html", {"apps": apps, "host": host, "nav": "apps"},
                 {"apps": "dashboard/_apps.html"})


@never_cache
@login_required
def app_detail(request, name):
    app = app_selectors.app_by_name(name)
    if app is None:
        messages.error(request, f"No app named {name!r}: it may have been deleted.")
        return redirect("dashboard:apps")
    return _page(request, "dashboard/app.html", {"app": app_view(app), "nav": "apps"},
                 {"status": "dashboard/_app_status.html"})


ACTIONS = {
    "stop": ("Stopping", app_services.stop_app),
    "start": ("Starting", app_services.start_app),
    "delete": ("Deleting", app_services.delete_app),
}


@login_required
@require_POST
def app_action(request, name, action):
    if action not in ACTIONS:
        raise Http404("no such action")
    app = app_selectors.app_by_name(name)
    if app is None:
        messages.error(request, f"No app named {name!r}: it may have been deleted.")
        return redirect("dashboard:apps")
    verb, service = ACTIONS[action]
    if _run(request, action, lambda: service(app)):
        messages.success(request, f"{verb} app {name}.")
        if action == "delete":
            return redirect("dashboard:apps")
    return redirect("dashboard:app", name=name)
