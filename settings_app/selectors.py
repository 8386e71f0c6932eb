"""Reads of fleet settings and image inventories."""

from django.conf import settings

from processes.models import EdgeHost
from settings_app.models import EdgeSettings
from settings_app.versions import highest_version, is_newer, local_tags, split_image


def edge_settings() -> EdgeSettings:
    return EdgeSettings.objects.filter(name="default").first() or EdgeSettings(name="default")


def default_camera_image() -> str:
    return edge_settings().camera_image or settings.EDGEPROXY_CAMERA_IMAGE


def settings_payload(current: EdgeSettings | None = None) -> dict:
    from processes.selectors import ms

    current = current or edge_settings()
    body = {
        "name": current.name,
        "edge_key": current.edge_key or None,
        "edge_secret": "***" if current.has_edge_secret else None,
        "project_id": current.project_id or None,
        "region": current.region or None,
        "registry_id": current.registry_id or None,
        "gateway_id": current.gateway_id or None,
        "camera_image": default_camera_image(),
        "created": ms(current.created) if current.pk else None,
        "modified": ms(current.modified) if current.pk else None,
    }
    return body


CAMERA_TYPES = {"rtsp"}


def camera_type(repository: str) -> str:
    camera_repo, _ = split_image(default_camera_image())
    return "rtsp" if repository == camera_repo else "unknown"


def image_upgrade(host: EdgeHost, repository: str) -> dict:
    """The original ``ImageUpgrade`` object for one host. No registry is asked here."""
    tags = [t for t in local_tags(host.images or [], repository) if t != "latest"]
    current = highest_version(tags)
    return {
        "host": host.name,
        "name": repository,
        "has_image": bool(tags),
        "current_version": current,
        "highest_remote_version": None,
        "has_upgrade": False,
        "camera_type": camera_type(repository),
        "local_versions": sorted(tags),
    }


def image_upgrades(repository: str, hosts) -> dict:
    per_host = [image_upgrade(h, repository) for h in hosts]
    best = highest_version(v["current_version"] for v in per_host if v["current_version"])
    return {
        "name": repository,
        "has_image": any(v["has_image"] for v in per_host),
        "current_version": best,
        "highest_remote_version": None,
        "has_upgrade": False,
        "camera_type": camera_type(repository),
        "hosts": per_host,
    }


def all_images(hosts) -> list[dict]:
    rows = []
    for host in hosts:
        for img in host.images or []:
            rows.append(
                {
                    "Host": host.name,
                    "Id": img.get("id"),
                    "RepoTags": [f"{img['repository']}:{img['tag']}"] if img.get("repository") else [],
                    "Size": img.get("size"),
                    "Created": img.get("created"),
                }
            )
    return rows


def newer_exists(current_tag: str, host: EdgeHost) -> str | None:
    repository, current = split_image(current_tag)
    best = highest_version(local_tags(host.images or [], repository))
    return best if is_newer(best, current) else None
