"""Image tags and versions: ``0.0.10`` is newer than ``0.0.9``; ``latest`` is never newer."""

import re

from packaging.version import InvalidVersion, Version

# An image repository as Docker accepts it, optionally with its registry host[:port]
# (``127.0.0.1:5000/edgeproxy/camera``), and a tag.
# Docker's reference grammar: no part may be empty, "." or ".." (no path segments to climb out).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]{{1,5}})?"
REPOSITORY_RULE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# repository:tag (the tag is required: a camera runs a definite version).
IMAGE_RULE = re.compile(rf"{REPOSITORY_RULE.pattern}:{TAG_RULE.pattern}")


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry port (``host:5000/repo``) is not a tag."""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


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
