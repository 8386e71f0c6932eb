"""Reads of app processes and of the image allow-list."""

from django.db.models import QuerySet

from processes.models import AppImageRule, AppProcess


def apps(host: str | None = None) -> QuerySet[AppProcess]:
    queryset = AppProcess.objects.select_related("host", "last_operation").order_by("name")
    return queryset.filter(host__name=host) if host else queryset


def app_by_name(name: str) -> AppProcess | None:
    return apps().filter(name=name).first()


def apps_reading(camera_name: str) -> list[AppProcess]:
    """The apps that read this camera (SQLite has no JSON containment: filtered here)."""
    return [app for app in apps() if camera_name in (app.cameras or [])]


def image_rule(repository: str) -> AppImageRule | None:
    """The allow-list entry that lets ``repository`` (user/repo or repo) run: exact, else ``user/*``."""
    rules = {rule.repository: rule for rule in AppImageRule.objects.all()}
    if repository in rules:
        return rules[repository]
    owner, _, _ = repository.rpartition("/")
    return rules.get(f"{owner}/*") if owner else None


def allowed_repositories() -> list[str]:
    return list(AppImageRule.objects.order_by("repository").values_list("repository", flat=True))


def ports_used(host_id: int, excluding: str | None = None) -> dict[int, str]:
    """Host ports the apps of a host publish: port -> app name."""
    used: dict[int, str] = {}
    for name, mappings in AppProcess.objects.filter(host_id=host_id).exclude(name=excluding or "").values_list(
            "name", "port_mappings"):
        for mapping in mappings or []:
            used[int(mapping["exposed"])] = name
    return used
