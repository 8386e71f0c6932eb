"""API tokens: ``Authorization: Token <key>``, stored hashed (django-rest-knox, SHA-512).

The database holds a token's digest and its first 15 characters (knox's look-up key), never the
token: whoever reads the database cannot call the API. ``manage.py create_api_token`` prints a
new token once; it cannot be shown again.
"""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions


class ApiTokenAuthentication(TokenAuthentication):
    """knox's token check; a token that is not text is a 401 like any wrong token (not a 500)."""

    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)

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
