"""Name rules: what a camera may be called, and what an image reference looks like."""

import re

# What a user may name a camera (the API, the dashboard): the name is also a container name, a
# Redis key part and the gRPC device_id, so it stays short and plain.
CAMERA_NAME_MAX = 63
CAMERA_NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_-]{2,62}")
CAMERA_NAME_HELP = "3 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit"

# What the edge accepts as a camera (process, container, frame key) name: wider than the API's
# rule on purpose, so that the edge never refuses a name the control plane let through, and a
# name from an older control plane still works. It keeps out what could climb out of a path or
# inject into a command line.
EDGE_NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

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
IMAGE_HELP = "an image reference repository:version"
# The registry asked for newer versions: scheme, host and port only (no credentials, no path).
_PORT = r"(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
REGISTRY_URL_RULE = re.compile(rf"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::{_PORT})?/?")


def is_camera_name(value: str) -> bool:
    return bool(CAMERA_NAME_RULE.fullmatch(value))


def is_edge_name(value: str) -> bool:
    return bool(EDGE_NAME_RULE.fullmatch(value))


def is_image(value: str) -> bool:
    return bool(IMAGE_RULE.fullmatch(value))


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry port (``host:5000/repo``) is not a tag."""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""
