"""API tokens: ``Authorization: Token <key>``, stored hashed (django-rest-knox, SHA-512).

The database holds a token's digest and its first 15 characters (knox's look-up key), never the
token: whoever reads the database cannot call the API. ``manage.py create_api_token`` prints a
new token once; it cannot be shown again.
"""

import binascii
from functools import cache
from hmac import compare_digest

from django.db.models import OuterRef
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS

from edgeproxy.policy import read_only_group_member


@cache
def _tokens(for_a_change: bool):
    """The tokens with their users (and, ``for_a_change``, whether the user may change things): built
    once per process, as resolving the annotation was a sixth of the CPU of a connect; each request
    filters a copy."""
    tokens = AuthToken.objects.select_related("user")
    if for_a_change:
        tokens = tokens.annotate(in_read_only_group=read_only_group_member(OuterRef("user_id")))
    return tokens


class ApiTokenAuthentication(TokenAuthentication):
    """knox's token check; a token that is not text is a 401 like any wrong token (not a 500). The
    query that reads the token and its user also answers whether the user may change things
    (``edgeproxy.policy``) when the request would change something: one query per request, not two."""

    def authenticate(self, request):
        self.for_a_change = request.method not in SAFE_METHODS  # (an instance per request: DRF makes them)
        return super().authenticate(request)

    def authenticate_credentials(self, token):
        msg = _("Invalid token.")
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(msg) from None
        candidates = _tokens(getattr(self, "for_a_change", True)).filter(
            token_key=token[:CONSTANTS.TOKEN_KEY_LENGTH])
        for auth_token in candidates:  # as knox's own check (tokens never expire here: no AUTO_REFRESH)
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(token)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed(msg) from None
            if compare_digest(digest, auth_token.digest):
                if hasattr(auth_token, "in_read_only_group"):
                    auth_token.user.in_read_only_group = auth_token.in_read_only_group
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(msg)

    def _cleanup_token(self, auth_token) -> bool:
        """This token only: knox reads every other token of the user at every request to delete the
        expired ones, a query on the path of every call (ours never expire: ``new_api_token``)."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


def new_api_token(user) -> str:
    """A new token of ``user`` that never expires; only its digest is stored."""
    _instance, token = AuthToken.objects.create(user=user, expiry=None)
    return token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documented as before (``tokenAuth``): clients send the same header."""

    target_class = "edgeproxy.api.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'Token-based authentication with required prefix "Token"'}
