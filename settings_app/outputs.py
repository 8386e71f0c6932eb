"""The fleet settings as the API answers them: one definition (``SettingsResponseSerializer``), used
for the answers and for the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from rest_framework import serializers

from edgeproxy.contracts.times import ms
from settings_app import selectors
from settings_app.models import EdgeSettings


class _SettingsFact:
    """A value computed from the whole settings record (``value(settings)``), not one column."""

    def __init__(self, value: Callable[[EdgeSettings], object], **kwargs):
        self._value = value
        super().__init__(source="*", **kwargs)

    def get_attribute(self, instance):
        return self._value(instance)

    def to_representation(self, value):
        return value


class _SettingsText(_SettingsFact, serializers.CharField):
    pass


class _SettingsNumber(_SettingsFact, serializers.IntegerField):
    pass


def _or_null(column: str) -> Callable[[EdgeSettings], object]:
    return lambda current: getattr(current, column) or None


def _ms_if_saved(column: str) -> Callable[[EdgeSettings], object]:
    return lambda current: ms(getattr(current, column)) if current.pk else None


class SettingsResponseSerializer(serializers.Serializer):
    name = serializers.CharField()
    edge_key = _SettingsText(_or_null("edge_key"), allow_null=True)
    edge_secret = _SettingsText(lambda current: "***" if current.has_edge_secret else None, allow_null=True,
                                help_text='"***" when set; never the secret')
    project_id = _SettingsText(_or_null("project_id"), allow_null=True)
    region = _SettingsText(_or_null("region"), allow_null=True)
    registry_id = _SettingsText(_or_null("registry_id"), allow_null=True)
    gateway_id = _SettingsText(_or_null("gateway_id"), allow_null=True)
    camera_image = _SettingsText(lambda current: selectors.default_camera_image(), help_text="image new cameras run")
    registry_url = _SettingsText(lambda current: current.registry_url or settings.EDGEPROXY_REGISTRY_URL or None,
                                 allow_null=True, required=False, help_text="registry asked for newer versions")
    created = _SettingsNumber(_ms_if_saved("created"), allow_null=True)
    modified = _SettingsNumber(_ms_if_saved("modified"), allow_null=True)

    class Meta:
        ref_name = "Settings"
