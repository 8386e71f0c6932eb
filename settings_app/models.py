"""Fleet-wide settings (one row) : the edge credentials and the default camera image."""

from django.db import models


class EdgeSettings(models.Model):
    name = models.CharField(max_length=63, unique=True, default="default")
    edge_key = models.CharField(max_length=255, blank=True)
    edge_secret_encrypted = models.TextField(blank=True, help_text="encrypted at rest, never shown")
    project_id = models.CharField(max_length=255, blank=True)
    region = models.CharField(max_length=64, blank=True)
    registry_id = models.CharField(max_length=255, blank=True)
    gateway_id = models.CharField(max_length=255, blank=True)
    camera_image = models.CharField(
        max_length=255, blank=True, help_text="image (repo:version) new cameras use; empty = EDGEPROXY_CAMERA_IMAGE"
    )
    registry_url = models.CharField(
        max_length=255, blank=True,
        help_text="Docker registry asked for remote versions (http(s)://host[:port]); empty = EDGEPROXY_REGISTRY_URL",
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "edge settings"
        verbose_name_plural = "edge settings"

    def __str__(self) -> str:
        return self.name

    @property
    def has_edge_secret(self) -> bool:
        return bool(self.edge_secret_encrypted)
