"""The API's gunicorn server, as edgeproxy/gunicorn_conf.py shapes it for bin/run, compose and the tests."""

from __future__ import annotations

import re
import subprocess


def test_each_api_worker_listens_on_a_socket_of_its_own(system):
    """As bin/run, compose and the image run it (SO_REUSEPORT): a new master binds at once while the
    workers of a killed one finish their requests, and the kernel hashes connections over the workers."""
    listeners = subprocess.run(["ss", "-Hltnp", f"sport = :{system.port}"], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    owners = {int(pid) for line in listeners for pid in re.findall(r"pid=(\d+)", line)}
    assert len(listeners) == 2 and len(owners) == 2 and system.api.pid not in owners, listeners
