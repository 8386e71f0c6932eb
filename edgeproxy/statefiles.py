"""Files kept in the state directory of an embedded installation (generated secrets)."""

import os
import secrets
from pathlib import Path


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
