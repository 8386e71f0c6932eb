"""Logging of refused requests (the ``django.request`` logger)."""

from __future__ import annotations

import logging


class RefusalWithoutTraceback(logging.Filter):
    """A request refused with 403 (``PermissionDenied``: a view-only admin page posted to, a
    user without the right) is one WARNING line, not a traceback: nothing crashed, and a traceback
    in the log reads as a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
