"""Run the frame server: ``python -m worker.frames`` (configuration: see worker/frames/config.py)."""

import logging
import os
import signal
import sys
import threading

from worker.frames.config import ConfigError, FrameServerConfig


def main() -> int:
    try:
        config = FrameServerConfig.from_env()
    except ConfigError as exc:
        print(f"frame server: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        from worker.redaction import RedactingFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
            if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
                from worker.redaction import JsonFormatter

                handler.setFormatter(JsonFormatter())
    except ImportError:  # pragma: no cover - redaction is part of the worker package
        pass
    log = logging.getLogger("edgeproxy.frames")

    from worker.camera.heap import keep_frame_buffers
    from worker.frames.server import build_server

    keep_frame_buffers()  # replies of a frame's size without fresh pages per call (worker/camera/heap.py)

    try:
        server, servicer, port = build_server(config)
    except (OSError, RuntimeError) as exc:
        print(f"frame server: {exc} (is another frame server running? set EDGEPROXY_GRPC_PORT)", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info("frame server listening on %s:%d (%s, host %s, auth %s, frame bus %s)", config.bind, port,
             "TLS" if config.tls_cert else "plaintext", config.host,
             f"{len(config.tokens)} key(s) and the app keys of {config.app_keys_file}" if config.tokens else "off",
             config.redis_url)
    stop.wait()
    server.stop(grace=1.0).wait(2)
    servicer.stop()
    log.info("frame server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
