"""Files kept in the state directory of an embedded installation (generated secrets)."""

import os
import secrets
from pathlib import Path


def make_private(state_dir: Path) -> None:
    """Keep ``state_dir`` owner-only, whichever command runs first (bin/run, manage.py migrate,
    collectstatic, a worker): create it 0700, tighten it if others may enter it, and make every file
    and folder this process creates owner-only (umask 077): the SQLite database, its journal, the
    beat schedule, keys and static files. The folder holds API tokens, sessions and keys."""
    os.umask(os.umask(0o077) | 0o077)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = state_dir.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(state_dir, 0o700)


def state_secret(state_dir: Path, name: str) -> str:
    """Return a random secret stored in ``state_dir/name``, creating it (mode 0600) on first use."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
