"""gunicorn settings shared by bin/run, the compose stack and the tests:
``gunicorn -c python:edgeproxy.gunicorn_conf edgeproxy.wsgi``."""

import re

from gunicorn.glogging import Logger

from worker.redaction import redact

_SECRET_PATH = re.compile(r"(/settings/overwrite/)[^\s?\"]+")


class RedactingAccessLogger(Logger):
    """Access log lines never show the edge secret in a path or a password in a query."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(_SECRET_PATH.sub(r"\1***", atoms[key]))
        return atoms


logger_class = RedactingAccessLogger
accesslog = "-"
graceful_timeout = 5
