"""gunicorn settings shared by bin/run, the compose stack and the tests:
``gunicorn -c python:edgeproxy.gunicorn_conf edgeproxy.wsgi``.

* Logs: gunicorn's own error and access logs go through the same redaction as every other log
  line (the access log never shows the edge secret in a path or a password in a query), and are
  JSON when ``LOG_FORMAT=json``.
* Errors gunicorn answers itself (a request line over 4094 bytes: 414, headers too large: 431,
  a malformed request: 400) are the API's JSON error ``{"code", "message"}``, not HTML.
* Metrics: every worker process counts its requests; prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary directory unless set) lets ``/metrics`` add them
  up whichever worker answers the scrape.
* The server's shape (workers, threads, listening sockets) is set here, the one place
  bin/run, the compose stack, the image and the tests take it from (docs/configuration.md).
* A new worker is warmed up before its first request (views imported, a broker connection in
  Celery's pool): a cold worker's first connects took about 0.3 s more on 2 cores.
"""

import glob
import os
import re
import shutil
import tempfile

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

from edgeproxy.env import envint
from worker.redaction import JsonFormatter, RedactingFilter, redact

_SECRET_PATH = re.compile(r"(/settings/overwrite/)[^\s?\"]+")

_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    # Set before any worker imports prometheus_client (workers import the app after the fork).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgeproxy-metrics-")


# gunicorn's own messages can quote the request line (a secret path): only these, which do not, are kept.
_GUNICORN_MESSAGES = {
    414: "The request line (method and URL) is longer than gunicorn's limit of 4094 bytes.",
    431: "The request headers are too large.",
    400: "The request is not valid HTTP (request line, headers or chunked body).",
}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error with the API's JSON error body instead of an HTML page."""
    import json

    body = json.dumps({"code": status_int, "message": _GUNICORN_MESSAGES.get(status_int, f"{reason}.")}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    gunicorn_util.write_nonblock(sock, head + body)


gunicorn_util.write_error = write_json_error  # workers call util.write_error at the time of the error


class RedactingAccessLogger(Logger):
    """Access log lines never show the edge secret in a path or a password in a query."""

    def setup(self, cfg):
        super().setup(cfg)
        json_format = os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
        for handler in self.error_log.handlers + self.access_log.handlers:
            handler.addFilter(RedactingFilter())
            if json_format:
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(_SECRET_PATH.sub(r"\1***", atoms[key]))
        return atoms


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):  # counts of an earlier run
        os.remove(stale)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


logger_class = RedactingAccessLogger
accesslog = "-"
graceful_timeout = 5

# Threads: a ``?wait=`` request holds one for up to 60 s, so a worker has several; each process
# runs Python on one core at a time (the GIL), so there are as many processes as cores.
worker_class = "gthread"
workers = envint("API_WORKERS", 2, minimum=1, maximum=64)
threads = envint("API_THREADS", 8, minimum=1, maximum=256)
# Each worker listens on a socket of its own (SO_REUSEPORT): a new master binds at once while the
# workers of a killed one finish their requests (bin/run restarts it so); the kernel hashes new
# connections over the workers' sockets.
reuse_port = True


def _no_delay(sockets) -> None:
    """TCP_NODELAY on listening sockets (accepted ones inherit it on Linux): without it a response
    written in two parts waits for the client's delayed ACK, about 40 ms a request."""
    import socket

    for listener in sockets:
        if listener.sock.family in (socket.AF_INET, socket.AF_INET6):
            listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def when_ready(server):
    _no_delay(server.LISTENERS)  # (none with reuse_port: each worker makes its own, post_worker_init)


def _warm_up(worker) -> None:
    """Do once, before the worker takes requests, what its first requests would otherwise wait for:
    import every view with its serializers (the URL conf is loaded at the first resolve), and finalize
    the Celery app with a broker connection in its pool. A part that fails here is only logged: the
    request that needs it reports it as usual."""
    try:
        from django.urls import get_resolver

        get_resolver().resolve("/api/v1/process")
        from edgeproxy.celery import app

        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=0)
    except Exception as exc:  # noqa: BLE001 - a worker without its warm-up still serves
        worker.log.warning("warm-up before the first request: %s", redact(str(exc)))


def post_worker_init(worker):
    _no_delay(worker.sockets)
    _warm_up(worker)
