"""Writes of fleet settings."""

from django.db import transaction

from edgeproxy import crypto
from settings_app.models import EdgeSettings

EDITABLE = ("edge_key", "project_id", "region", "registry_id", "gateway_id", "camera_image", "registry_url")


@transaction.atomic
def overwrite_settings(*, edge_secret: str | None = None, **fields) -> EdgeSettings:
    current, _ = EdgeSettings.objects.select_for_update().get_or_create(name="default")
    for name in EDITABLE:
        if name in fields and fields[name] is not None:
            setattr(current, name, fields[name])
    if edge_secret is not None:
        current.edge_secret_encrypted = crypto.encrypt(edge_secret) if edge_secret else ""
    current.save()
    return current
