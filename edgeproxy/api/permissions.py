"""Who may call the API: token holders; read-only tokens may only read."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

from edgeproxy.policy import READ_ONLY_GROUP, user_may_change

__all__ = ["READ_ONLY_GROUP", "ApiAccess", "may_change"]


class ApiAccess(BasePermission):
    """Any token may read; only tokens outside the read-only group may change anything.

    A view whose GET changes something (``GET /settings/dockerpullimage`` pulls images, as the
    original API had it) says so with ``changes_state = True``: read-only tokens get a 403 there.
    """

    def has_permission(self, request, view) -> bool:
        if not settings.EDGEPROXY_AUTH:
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        if request.method in SAFE_METHODS and not getattr(view, "changes_state", False):
            return True
        return may_change(request)


def may_change(request) -> bool:
    """May this caller change things (and cause outbound requests, such as asking a registry)?"""
    if not settings.EDGEPROXY_AUTH:
        return True
    return user_may_change(request.user)
