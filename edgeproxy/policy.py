"""Rules every interface applies the same way (the API, the dashboard, management commands):
who may change things, and how an outage of the broker or the database is told to a user."""

from django.db import DatabaseError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError

# Accounts (API tokens' users, dashboard logins) in this group may read, not change anything.
READ_ONLY_GROUP = "read-only"

BROKER_DOWN_MESSAGE = "The message broker (Redis) is unreachable; nothing was changed. Try again."
DATABASE_DOWN_MESSAGE = "The database is unreachable or busy; try again."


def user_may_change(user) -> bool:
    """May this (logged-in) user change things and cause outbound requests?"""
    return bool(user is not None and user.is_authenticated
                and not user.groups.filter(name=READ_ONLY_GROUP).exists())


def outage_message(exc: BaseException) -> str | None:
    """The sentence for a broker or database outage, or None when ``exc`` is not one."""
    if isinstance(exc, BrokerError | RedisConnectionError):
        return BROKER_DOWN_MESSAGE
    if isinstance(exc, DatabaseError):
        return DATABASE_DOWN_MESSAGE
    return None
