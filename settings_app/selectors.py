"""Reads of fleet settings and image inventories."""

from datetime import datetime

from django.conf import settings
from django.db.models import Subquery

from settings_app.models import EdgeSettings
from settings_app.registry import remote_tags
from settings_app.versions import highest_version, is_newer, sort_tags, split_image


def edge_settings() -> EdgeSettings:
    return EdgeSettings.objects.filter(name="default").first() or EdgeSettings(name="default")


def default_camera_image() -> str:
    return camera_image_or_default(edge_settings().camera_image)


def camera_image_or_default(configured: str | None) -> str:
    """The camera image of new cameras, given the fleet settings' (None or "" when not set)."""
    return configured or settings.EDGEPROXY_CAMERA_IMAGE


def configured_camera_image() -> Subquery:
    """The fleet settings' camera image as a column of another query (``camera_image_or_default``
    of it is ``default_camera_image()``): a connect reads it with its host, not in a query of its own."""
    return Subquery(EdgeSettings.objects.filter(name="default").values("camera_image")[:1])


def configured_registry() -> str:
    """The registry asked for newer versions: the fleet settings', else EDGEPROXY_REGISTRY_URL ("" for none)."""
    return (edge_settings().registry_url or settings.EDGEPROXY_REGISTRY_URL or "").strip().rstrip("/")


def camera_type(repository: str) -> str:
    camera_repo, _ = split_image(default_camera_image())
    return "rtsp" if repository == camera_repo else "unknown"


def _has_upgrade(current: str | None, remote_best: str | None, remote: list[str] | None) -> bool | None:
    if remote is None:
        return None  # no registry answered: unknown, not an error
    return remote_best is not None and (current is None or is_newer(remote_best, current))


def image_upgrade(host, repository: str, remote: list[str] | None = None) -> dict:
    """The original ``ImageUpgrade`` object for one host (an ``EdgeHost``), plus its local images with sizes and dates.

    ``remote``: the registry's tags of the repository, None when no registry answered."""
    entries = [img for img in host.images or [] if img.get("repository") == repository and img.get("tag")]
    tags = [t for t in sort_tags(img["tag"] for img in entries) if t != "latest"]
    current = highest_version(tags)
    remote_best = highest_version(remote) if remote is not None else None
    order = {tag: i for i, tag in enumerate(sort_tags(img["tag"] for img in entries))}
    return {
        "host": host.name,
        "name": repository,
        "has_image": bool(tags),
        "current_version": current,
        "highest_remote_version": remote_best,
        "has_upgrade": _has_upgrade(current, remote_best, remote),
        "camera_type": camera_type(repository),
        "local_versions": tags,
        "images": [
            {"tag": img["tag"], "id": img.get("id"), "size": img.get("size"), "created": img.get("created")}
            for img in sorted(entries, key=lambda i: order[i["tag"]])
        ],
    }


def image_upgrades(repository: str, hosts, ask_registry: bool = True) -> dict:
    """ImageUpgrade for the fleet (the highest local version anywhere) with one entry per host.
    The registry is asked once, briefly; when it does not answer (or is not asked: a read-only
    caller) the remote side is null."""
    remote = remote_tags(repository, configured_registry()) if ask_registry else None
    per_host = [image_upgrade(h, repository, remote) for h in hosts]
    best = highest_version(v["current_version"] for v in per_host if v["current_version"])
    remote_best = highest_version(remote) if remote is not None else None
    has_upgrade = None if remote is None else any(v["has_upgrade"] for v in per_host) or (
        not per_host and remote_best is not None)
    return {
        "name": repository,
        "has_image": any(v["has_image"] for v in per_host),
        "current_version": best,
        "highest_remote_version": remote_best,
        "has_upgrade": has_upgrade,
        "camera_type": camera_type(repository),
        "registry": configured_registry() or None,
        "remote_versions": sort_tags(remote) if remote is not None else None,
        "hosts": per_host,
    }


def _unix_seconds(rfc3339: str | None) -> int | None:
    if not rfc3339:
        return None
    try:
        return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def all_images(hosts) -> list[dict]:
    """Every local image of every host, one row per host and image id (Docker's image list shape)."""
    rows: list[dict] = []
    for host in hosts:
        by_id: dict[str, dict] = {}
        for img in host.images or []:
            key = img.get("id") or f"{img.get('repository')}:{img.get('tag')}"
            row = by_id.setdefault(key, {
                "Host": host.name,
                "Id": img.get("id"),
                "RepoTags": [],
                "Size": img.get("size"),
                "Created": _unix_seconds(img.get("created")),
                "CreatedAt": img.get("created") or None,
            })
            if img.get("repository"):
                row["RepoTags"].append(f"{img['repository']}:{img['tag']}" if img.get("tag") else img["repository"])
        rows.extend(by_id.values())
    return rows
