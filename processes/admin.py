from django.contrib import admin
from rest_framework.authtoken.models import TokenProxy

from processes.models import Annotation, Camera, EdgeHost, Operation

# API tokens are knox's (stored hashed, listed under "Knox"); DRF's plain token table stays empty.
admin.site.unregister(TokenProxy)


@admin.register(EdgeHost)
class EdgeHostAdmin(admin.ModelAdmin):
    list_display = ("name", "runtime", "last_heartbeat", "frames_address")
    search_fields = ("name",)
    readonly_fields = ("queue", "runtime", "last_heartbeat", "facts", "images", "frames_address", "public_key",
                       "created")


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    """Cameras as they are, read-only: a camera changes only through the services (API, dashboard,
    commands), which validate the change and run it on its host. A write here would skip both."""

    # The encrypted URLs are never shown here.
    list_display = ("name", "host", "status", "desired_state", "image_tag", "rtsp_endpoint_masked", "modified")
    list_filter = ("status", "desired_state", "host")
    search_fields = ("name",)
    exclude = ("rtsp_endpoint_encrypted", "rtmp_endpoint_encrypted")

    # View only: every field is shown read-only and no form saves (not even the "modified" time).
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "camera_name", "host", "state", "created", "finished")
    list_filter = ("kind", "state", "host")
    search_fields = ("camera_name", "id")
    readonly_fields = [f.name for f in Operation._meta.fields]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("camera_name", "type", "start_timestamp", "object_type", "confidence", "host")
    list_filter = ("type", "host")
    search_fields = ("camera_name", "type", "object_type")

# App processes and their image allow-list (issue 16).
from processes import app_admin as _app_admin  # noqa: E402,F401
