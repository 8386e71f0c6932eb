"""Stand-in camera program until the real one lands: logs its start and sleeps until SIGTERM."""

import os
import signal
import sys
import time

name = os.environ.get("EDGEPROXY_CAMERA_NAME")
if not name:
    print("EDGEPROXY_CAMERA_NAME is not set: the runtime must pass the camera name", file=sys.stderr)
    sys.exit(2)
running = True


def _stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, _stop)
print(f"camera {name}: started (stand-in)", flush=True)
while running:
    time.sleep(0.1)
print(f"camera {name}: stopped", flush=True)
