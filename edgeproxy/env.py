"""Typed, strict reading of settings from the environment.

Every setting of edgeproxy comes from an environment variable. Secrets may instead come from a
file named by ``<NAME>_FILE`` (Docker and Kubernetes secrets). Nonsense raises ``SettingError``
at start-up, naming the variable, instead of failing later.

The one reader of settings for the control plane, the edge worker and the frame server. Each
function reads ``os.environ`` unless given ``env`` (a mapping: a process's configuration that is
not its own environment, or a test's). The camera program (``worker/camera/``) keeps its own
reader: its image holds nothing of edgeproxy but that package. Django-free (the frame server
runs without it).
"""

import os
from collections.abc import Mapping
from typing import overload

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingError(ValueError):
    """A setting is missing or wrong; the message names the variable and what to fix."""


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def envfile(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The text of the file whose path the variable holds (None when it is unset or empty)."""
    path = _environ(env).get(name, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise SettingError(f"{name}: cannot read {path!r}: {exc.strerror}") from None


@overload
def envstr(name: str, default: str, env: Mapping[str, str] | None = None) -> str: ...
@overload
def envstr(name: str, default: None = None, env: Mapping[str, str] | None = None) -> str | None: ...


def envstr(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    from_file = envfile(f"{name}_FILE", env)
    if from_file is not None:
        return from_file.strip()
    return _environ(env).get(name, default)


def envbool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    raw = _environ(env).get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def envint(name: str, default: int, minimum: int | None = None, maximum: int | None = None,
           env: Mapping[str, str] | None = None) -> int:
    raw = _environ(env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name} must be at most {maximum}, got {value}")
    return value


def envfloat(name: str, default: float, minimum: float | None = None, env: Mapping[str, str] | None = None) -> float:
    raw = _environ(env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...], env: Mapping[str, str] | None = None) -> str:
    """One of ``choices`` (case-insensitive); unset or empty is ``default``."""
    value = _environ(env).get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def envlist(name: str, default: str = "", env: Mapping[str, str] | None = None) -> list[str]:
    raw = _environ(env).get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def envdatabase(name: str, default: str, env: Mapping[str, str] | None = None) -> dict:
    """Django's ``DATABASES`` entry from a database URL (``postgres://user:password@host/name``,
    ``sqlite:////path``; ``<NAME>_FILE`` works, as the URL holds a password). django-environ
    parses the URL: every scheme and option it knows."""
    import environ

    url = (envstr(name, None, env) or "").strip() or default
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in environ.Env.DB_SCHEMES:
        raise SettingError(f"{name} must be a database URL such as postgres://user:password@host:5432/name "
                           f"or sqlite:////path/to/file (got {'scheme ' + repr(scheme) if scheme else 'no scheme'})")
    try:
        return environ.Env.db_url_config(url)
    except Exception as exc:  # noqa: BLE001 - whatever the parser refused, say which variable (never the URL)
        raise SettingError(f"{name} is not a valid {scheme} URL ({type(exc).__name__})") from None
