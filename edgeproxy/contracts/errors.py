"""Domain errors: what went wrong, in words a user reads, without HTTP codes or routes.

Services raise these; each interface answers them its own way (the API: ``edgeproxy.api.errors``
maps each class to a status code; the dashboard shows the message; commands raise CommandError).
"""


class DomainError(Exception):
    """A refusal with one clear sentence (``message``), field errors (``errors``: field ->
    messages) and facts the caller may show (``extra``, e.g. the versions an upgrade could use)."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.extra = extra or {}


class Invalid(DomainError):
    """The input breaks a rule; nothing was changed."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None,
                 field: str | None = None):
        if field and errors is None:
            errors = {field: [message]}
        super().__init__(message, errors, extra)
        self.field = field


class Forbidden(DomainError):
    """A rule of the installation forbids it (an app image not on the allow-list); the message names the rule."""


class NotFound(DomainError):
    """No such camera, host, operation or image."""


class Conflict(DomainError):
    """The thing exists already, or the state forbids it now (a camera busy with an operation)."""


class Busy(Conflict):
    """The camera is busy with another operation (one at a time per camera): try again later."""


class Unavailable(DomainError):
    """A part needed for it is away (no edge host online, a frame server not answering)."""


class TimedOut(DomainError):
    """A part needed for it did not answer in time."""


class NotSupported(DomainError):
    """Not available in this version."""


class ImageNotOnHost(Conflict):
    """An upgrade names a version its camera's host does not have: it must be pulled first.
    ``repository`` and ``version`` let an interface say how to pull it."""

    def __init__(self, message: str, repository: str, version: str, extra: dict | None = None):
        super().__init__(message, extra=extra)
        self.repository = repository
        self.version = version
