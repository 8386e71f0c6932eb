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
    if user is None or not user.is_authenticated:
        return False
    read_only = getattr(user, "in_read_only_group", None)  # read with the user (read_only_group_member)
    if read_only is None:
        read_only = user.groups.filter(name=READ_ONLY_GROUP).exists()
    return not read_only


def read_only_group_member(user_id):
    """``user_may_change``'s question as a column of the query that reads the user (``user_id``: an
    ``OuterRef`` to its id); set its value on the user as ``in_read_only_group``, and that answer
    costs no query of its own (the API's token check reads the user at every request)."""
    from django.contrib.auth.models import Group
    from django.db.models import Exists

    return Exists(Group.objects.filter(user=user_id, name=READ_ONLY_GROUP))


def outage_message(exc: BaseException) -> str | None:
    """The sentence for a broker or database outage, or None when ``exc`` is not one."""
    if isinstance(exc, BrokerError | RedisConnectionError):
        return BROKER_DOWN_MESSAGE
    if isinstance(exc, DatabaseError):
        return DATABASE_DOWN_MESSAGE
    return None
