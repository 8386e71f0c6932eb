"""Times as the API and the edge reports carry them: milliseconds since the epoch."""

from datetime import datetime
from typing import overload


@overload
def ms(dt: datetime) -> int: ...
@overload
def ms(dt: datetime | None) -> int | None: ...


def ms(dt: datetime | None) -> int | None:
    """``dt`` in whole milliseconds since the epoch (None stays None)."""
    return int(dt.timestamp() * 1000) if dt else None
