"""bin/test holds a machine-wide lock so runs never share the Docker engine and PostgreSQL at once.
The servers a run starts outlive it, so they must not inherit the lock: otherwise the next
``bin/test`` on the same machine waits for ever (issue 11, section 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LOCK = Path("/tmp/edgeproxy-tests.lock")


def holders_of(path: Path) -> dict[int, str]:
    """pid -> command name of every process with ``path`` open."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(os.readlink(fd) == str(path) for fd in fds):
                found[int(proc.name)] = (proc / "comm").read_text().strip()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def test_only_the_flock_process_holds_the_test_lock(docker_client):
    """Run under bin/test: dockerd and PostgreSQL are up and this run holds the lock. The lock's
    descriptor is open in the `flock` process alone, not in pytest nor in any server."""
    if not os.environ.get("EDGEPROXY_TEST_LOCKED"):
        pytest.fail("run the tests with bin/test: it takes the lock this test checks")
    holders = holders_of(LOCK)
    assert holders, f"no process holds {LOCK}"
    assert set(holders.values()) == {"flock"}, f"processes other than flock hold the test lock: {holders}"
