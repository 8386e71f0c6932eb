"""Routes: both the documented and the original video-edge-ai-proxy paths lead to the same views."""

from django.contrib import admin
from django.urls import include, path, re_path

from edgeproxy.api import health, metrics
from edgeproxy.api.docs import SchemaView, SwaggerView
from processes import api as processes
from processes import app_api as apps
from processes import image_api, recording_api
from processes.events import api as events_api
from settings_app import api as settings_api

v1 = "api/v1/"

urlpatterns = [
    # Cameras
    path(v1 + "process", processes.ProcessCollection.as_view()),
    path(v1 + "process/startrtsp", processes.ProcessStartRtsp.as_view()),
    path(v1 + "process/stop/<str:name>", processes.ProcessStop.as_view()),
    path(v1 + "process/info/<str:name>", processes.ProcessDetail.as_view(http_method_names=["get"])),
    path(v1 + "process/<str:name>/start", processes.ProcessStart.as_view()),
    path(v1 + "process/<str:name>/stop", processes.ProcessStop.as_view(http_method_names=["post"])),
    path(v1 + "process/<str:name>/frame.jpg", processes.ProcessFrame.as_view()),
    path(v1 + "process/<str:name>/move", processes.ProcessMove.as_view()),
    # Recording (issue 15)
    path(v1 + "process/<str:name>/recording", recording_api.ProcessRecording.as_view()),
    path(v1 + "process/<str:name>/recordings", recording_api.ProcessRecordings.as_view()),
    path(v1 + "process/<str:name>/recordings/<str:file>", recording_api.ProcessRecordingSegment.as_view()),
    path(v1 + "process/<str:name>/clip.mp4", recording_api.ProcessClip.as_view()),
    path(v1 + "process/<str:name>", processes.ProcessDetail.as_view()),
    path(v1 + "processlist", processes.ProcessList.as_view()),
    path(v1 + "processupgrades/findrtspupgrades", processes.ProcessUpgrades.as_view(http_method_names=["get"])),
    path(v1 + "processupgrades/upgradecontainer", processes.ProcessUpgrades.as_view(http_method_names=["post"])),
    path(v1 + "processupgrades", processes.ProcessUpgrades.as_view()),
    path(v1 + "annotations", processes.AnnotationList.as_view()),
    # Paged, filtered lists and bulk onboarding (/processlist keeps its full answer)
    path(v1 + "cameras", processes.CameraList.as_view()),
    path(v1 + "cameras/bulk", processes.CameraBulkConnect.as_view()),
    path(v1 + "tasks", processes.TaskList.as_view()),
    # Hosts and operations
    path(v1 + "hosts", processes.HostCollection.as_view()),
    path(v1 + "hosts/<str:name>", processes.HostDetail.as_view()),
    path(v1 + "tasks/<uuid:task_id>", processes.TaskDetail.as_view()),
    # Settings and images
    path(v1 + "settings", settings_api.SettingsView.as_view()),
    path(v1 + "settings/", settings_api.SettingsView.as_view(http_method_names=["get"])),
    path(v1 + "settings/overwrite/<str:edge_params>", settings_api.SettingsOverwrite.as_view()),
    path(v1 + "settings/dockerpullimage", image_api.PullImage.as_view()),
    path(v1 + "dockerpull", image_api.PullImage.as_view()),
    re_path(r"^api/v1/settings/dockerimageslocally/(?P<image_name>.+)$", image_api.LocalImages.as_view()),
    path(v1 + "devicedockerimages", image_api.LocalImagesByTag.as_view()),
    path(v1 + "alldockerimages", image_api.AllImages.as_view()),
    # App processes (issue 16)
    path(v1 + "appprocess", apps.AppProcessCollection.as_view()),
    path(v1 + "appprocesslist", apps.AppProcessList.as_view()),
    path(v1 + "appprocessupgrades", apps.AppProcessUpgrades.as_view()),
    path(v1 + "appprocess/<str:name>/start", apps.AppProcessStart.as_view()),
    path(v1 + "appprocess/<str:name>/stop", apps.AppProcessStop.as_view()),
    path(v1 + "appprocess/<str:name>", apps.AppProcessDetail.as_view()),
    # Events out: webhooks (issue 17)
    path(v1 + "webhooks", events_api.WebhookCollection.as_view()),
    path(v1 + "webhooks/<uuid:webhook_id>", events_api.WebhookDetail.as_view()),
    path(v1 + "webhooks/<uuid:webhook_id>/deliveries", events_api.WebhookDeliveries.as_view()),
    # Schema, docs, health, admin
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema")),
    path("swagger/", SwaggerView.as_view(url_name="schema")),
    path("healthz", health.healthz),
    path("metrics", metrics.metrics),
    path("admin/", admin.site.urls),
    # The dashboard (server-rendered pages, session login): last, it owns the rest of the paths.
    path("", include("processes.dashboard.urls")),
]

handler404 = "edgeproxy.api.errors.json_404"
handler500 = "edgeproxy.api.errors.json_500"
