"""Remote versions from a Docker registry (Registry HTTP API v2: ``GET /v2/<repo>/tags/list``).

Only the configured registry is asked (``EdgeSettings.registry_url``, else ``EDGEPROXY_REGISTRY_URL``),
with a short timeout (``EDGEPROXY_REGISTRY_TIMEOUT``). Whatever goes wrong means "no answer"
(``None``), never an error of the caller. A repository that names a registry host
(``127.0.0.1:5000/edgeproxy/camera``) is looked up only when that host is the configured
registry's; a repository without one (``edgeproxy/camera``) is looked up in the configured one.
Anonymous bearer tokens (Docker Hub style) are fetched when the registry asks for one; no
credentials are ever sent or stored.

A registry must not steer the control plane to other servers: a token realm is followed only on
the registry's own host (or one of ``EDGEPROXY_REGISTRY_AUTH_HOSTS``; Docker Hub's token service
for Docker Hub), and no redirect is ever followed. Only callers that may change things cause these
requests (see ``processes.image_api.LocalImages``).
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

logger = logging.getLogger("edgeproxy.registry")

_MAX_PAGES = 10
_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "registry.hub.docker.com")
_HUB_AUTH_HOST = "auth.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def split_registry(repository: str) -> tuple[str | None, str]:
    """``host[:port]/path`` -> (host[:port], path); (None, repository) when it names no registry."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower(), rest
    return None, repository


def check_registry_url(value: str) -> str | None:
    """Why ``value`` is not a usable registry URL (None when it is)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "must be an http:// or https:// URL."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host."
    if parts.username or parts.password:
        return "must not contain credentials."
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        return "must be the registry's base URL (scheme, host and port only)."
    return None


def _realm_allowed(realm: str, registry_netloc: str) -> bool:
    """Is ``realm`` (a token service URL a registry named) on a host we may ask?"""
    try:
        parts = urlsplit(realm)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    allowed = {registry_netloc, *settings.EDGEPROXY_REGISTRY_AUTH_HOSTS}
    if registry_netloc in _HUB_HOSTS:
        allowed.add(_HUB_AUTH_HOST)
    # host alone (any port), or host:port; a realm without a port matches host:80 or host:443.
    return host in allowed or f"{host}:{port}" in allowed or (parts.port is None and parts.netloc.lower() in allowed)


def _anonymous_token(session: requests.Session, challenge: str, path: str, timeout: float,
                     registry_netloc: str) -> str | None:
    scheme, _, params = challenge.partition(" ")
    if scheme.lower() != "bearer":
        return None
    fields = dict(_CHALLENGE_PARAM.findall(params))
    realm = fields.get("realm", "")
    if not _realm_allowed(realm, registry_netloc):
        logger.warning("registry %s named a token service on another host; not asked (allow its host "
                       "in EDGEPROXY_REGISTRY_AUTH_HOSTS if it is the registry's)", registry_netloc)
        return None
    query = {"scope": f"repository:{path}:pull"}
    if fields.get("service"):
        query["service"] = fields["service"]
    response = session.get(realm, params=query, timeout=timeout, allow_redirects=False)
    if response.status_code != 200:
        return None
    body = response.json()
    return body.get("token") or body.get("access_token") or None


def remote_tags(repository: str, base_url: str, timeout: float | None = None) -> list[str] | None:
    """Every tag of ``repository`` in the registry at ``base_url`` (``settings_app.selectors.configured_registry``),
    or None when no registry answered."""
    base = base_url.strip().rstrip("/")
    if not base or check_registry_url(base):
        return None
    timeout = settings.EDGEPROXY_REGISTRY_TIMEOUT if timeout is None else timeout
    netloc = urlsplit(base).netloc.lower()
    host, path = split_registry(repository)
    if host is not None and host != netloc:
        return None  # another registry than the configured one: not asked
    if host is None and netloc in _HUB_HOSTS and "/" not in path:
        path = f"library/{path}"
    url = f"{base}/v2/{path}/tags/list"
    headers = {"Accept": "application/json"}
    tags: list[str] = []
    deadline = time.monotonic() + 3 * timeout
    try:
        with requests.Session() as session:
            for _ in range(_MAX_PAGES):
                response = session.get(url, headers=headers, timeout=timeout, allow_redirects=False)
                if response.status_code == 401 and "Authorization" not in headers:
                    token = _anonymous_token(session, response.headers.get("WWW-Authenticate", ""), path, timeout,
                                             netloc)
                    if token is None:
                        return None
                    headers["Authorization"] = f"Bearer {token}"
                    response = session.get(url, headers=headers, timeout=timeout, allow_redirects=False)
                if response.status_code == 404:
                    return tags  # the registry answered: it has no such repository
                if response.status_code != 200:
                    logger.info("registry %s answered %s for %s", base, response.status_code, path)
                    return None
                body = response.json()
                tags.extend(t for t in (body.get("tags") or []) if isinstance(t, str))
                following = response.links.get("next", {}).get("url")
                if not following or time.monotonic() > deadline:
                    break
                url = urljoin(url, following)
                if urlsplit(url).netloc.lower() != netloc:
                    break  # pages of another host are not followed
    except (requests.RequestException, ValueError, AttributeError) as exc:
        logger.info("registry %s did not answer for %s: %s", base, path, type(exc).__name__)
        return None
    return tags
