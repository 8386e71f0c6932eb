"""Image tags and versions: ``0.0.10`` is newer than ``0.0.9``; ``latest`` is never newer."""

from packaging.version import InvalidVersion, Version

# The image reference rules are part of the contracts; imported here for the callers of this module.
from edgeproxy.contracts.names import IMAGE_RULE, REPOSITORY_RULE, TAG_RULE, split_image

__all__ = ["IMAGE_RULE", "REPOSITORY_RULE", "TAG_RULE", "highest_version", "is_newer", "local_tags", "parse_version",
           "sort_tags", "split_image"]


def parse_version(tag: str) -> Version | None:
    try:
        return Version(tag)
    except (InvalidVersion, TypeError):
        return None


def highest_version(tags) -> str | None:
    best, best_tag = None, None
    for tag in tags:
        version = parse_version(tag)
        if version is not None and (best is None or version > best):
            best, best_tag = version, tag
    return best_tag


def is_newer(candidate: str | None, current: str | None) -> bool:
    new, old = parse_version(candidate or ""), parse_version(current or "")
    return new is not None and old is not None and new > old


def local_tags(images: list[dict], repository: str) -> list[str]:
    """Tags of ``repository`` in a host's image inventory (entries: {"repository", "tag", ...})."""
    return [img["tag"] for img in images if img.get("repository") == repository and img.get("tag")]


def sort_tags(tags) -> list[str]:
    """Distinct tags, versions first in version order (0.0.9 before 0.0.10), then the others by name."""
    unique = set(tags)
    versions = sorted((t for t in unique if parse_version(t) is not None), key=parse_version)
    return versions + sorted(t for t in unique if parse_version(t) is None)
