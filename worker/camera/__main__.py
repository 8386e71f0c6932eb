"""``python -m worker.camera``: the camera process (see worker/camera/main.py and docs/camera.md)."""

import sys

from worker.camera.main import main

if __name__ == "__main__":
    sys.exit(main())
