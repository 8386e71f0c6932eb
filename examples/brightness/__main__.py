"""Example app process (docs/apps.md): the mean brightness of the newest frame of each of its
cameras, reported as an annotation (type ``brightness``, ``confidence`` = brightness / 255).

It reads only what edgeproxy gives every app: ``EDGEPROXY_FRAMES_ADDRESS`` (its host's frame
server), ``EDGEPROXY_CAMERAS`` (the cameras it reads), ``EDGEPROXY_FRAMES_SHM_DIR`` (the frame
rings: FrameClient takes the shared-memory path when they are mounted), ``EDGEPROXY_FRAMES_TOKEN``
(its own key, when the frame server requires keys) and its own ``INTERVAL_SECONDS`` (default 2).

    python -m examples.brightness
"""

import logging
import os
import signal
import threading
import time

from edgeproxy.client import FrameClient, FrameError

log = logging.getLogger("brightness")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    address = os.environ["EDGEPROXY_FRAMES_ADDRESS"]
    cameras = [name for name in os.environ.get("EDGEPROXY_CAMERAS", "").split(",") if name]
    interval = float(os.environ.get("INTERVAL_SECONDS", "2"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = FrameClient(address, token=os.environ.get("EDGEPROXY_FRAMES_TOKEN") or None, writable=False)
    log.info("reading %s from %s every %g s", ", ".join(cameras) or "no camera", address, interval)
    while not stop.is_set():
        for camera in cameras:
            try:
                frame, meta = client.latest(camera, timeout=5.0)
                brightness = float(frame.mean())  # cheap: one pass over the frame
                client.annotate(camera, "brightness", int(time.time() * 1000), object_type="frame",
                                confidence=brightness / 255.0)
                log.info("%s: brightness %.1f (%dx%d via %s)", camera, brightness, frame.shape[1], frame.shape[0],
                         meta.get("via"))
            except FrameError as exc:
                log.warning("%s: %s", camera, exc)
        stop.wait(interval)
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
