"""Swagger UI at ``/api/docs/`` and ``/swagger/``: assets served locally (drf-spectacular-sidecar).

The page and the schema need a token or an admin session like every other route; a browser
without a session is sent to the admin login and comes back.
"""

from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer


class SwaggerView(SpectacularSwaggerView):
    def handle_exception(self, exc):
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            return redirect_to_login(self.request.get_full_path(), "/admin/login/")
        return super().handle_exception(exc)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema (YAML by default, JSON with ?format=json); errors are JSON like everywhere."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return response
