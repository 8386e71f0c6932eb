"""Frame-API keys of app processes (docs/apps.md, "Frames for the app").

When the frame server of an edge host requires API keys, the edge worker gives every app it starts
a key of its own (``EDGEPROXY_FRAMES_TOKEN`` in the app's environment) and removes the key with the
app. Both sides use one owner-only file in the edge's state folder, a JSON object app name -> key:
the worker writes it (atomically), the frame server re-reads it whenever it changes, so a key works,
and stops working, without a restart. No Django here: the frame server imports it too.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path

from edgeproxy.env import envstr

# The app container's variable holding its key (read by examples/brightness).
FRAMES_TOKEN_ENV = "EDGEPROXY_FRAMES_TOKEN"

logger = logging.getLogger("edgeproxy.frames")

_write_lock = threading.Lock()  # the worker's threads (one file per host, one worker per host)


def state_dir(env=None) -> Path:
    """The edge's state folder (``EDGEPROXY_STATE_DIR``, as edgeproxy/settings.py reads it)."""
    return Path(envstr("EDGEPROXY_STATE_DIR", "", env) or str(Path.home() / ".local/state/edgeproxy"))


def keys_path(state: str | os.PathLike, host: str) -> Path:
    return Path(state) / f"edge-{host}-app-frame-keys.json"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return {str(app): str(key) for app, key in data.items() if isinstance(key, str) and key}


class AppKeyStore:
    """The edge worker's side: makes, keeps and removes the keys of this host's apps."""

    def __init__(self, path: Path):
        self.path = path

    def _write(self, keys: dict[str, str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp makes the file 0600: never readable by others, not even for a moment.
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(keys, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def issue(self, app_name: str) -> str:
        """The app's key: the one it has, or a new one (kept from now on)."""
        with _write_lock:
            keys = _read(self.path)
            if app_name not in keys:
                keys[app_name] = secrets.token_urlsafe(32)
                self._write(keys)
            return keys[app_name]

    def revoke(self, app_name: str) -> bool:
        """Forget the app's key (the frame server refuses it from its next call on)."""
        with _write_lock:
            keys = _read(self.path)
            if keys.pop(app_name, None) is None:
                return False
            self._write(keys)
            return True

    def keys(self) -> dict[str, str]:
        return _read(self.path)


class AppKeyFile:
    """The frame server's side: the keys of the file, re-read when its identity or mtime changes
    (one ``stat`` per call)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._keys: tuple[bytes, ...] = ()

    def current(self) -> tuple[bytes, ...]:
        try:
            info = os.stat(self.path)
            seen: tuple | None = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            seen = None
        except OSError as exc:
            seen = ("error", exc.errno)
        with self._lock:
            if seen != self._seen:
                self._seen = seen
                self._keys = self._load() if seen is not None else ()
            return self._keys

    def _load(self) -> tuple[bytes, ...]:
        try:
            return tuple(key.encode() for key in _read(self.path).values())
        except (OSError, ValueError) as exc:  # never the content: it holds keys
            logger.warning("app keys file %s not read (%s): app keys refused until it is fixed", self.path,
                           getattr(exc, "strerror", None) or type(exc).__name__)
            return ()


def matches(candidate: bytes, known) -> bool:
    """Is ``candidate`` one of ``known``? No early exit: constant time over the keys."""
    ok = False
    for key in known:
        ok |= hmac.compare_digest(candidate, key)
    return ok
