"""Dashboard routes, mounted at ``/`` by ``edgeproxy/urls.py``."""

from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from processes.dashboard import apps, recordings, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("connect/", views.connect, name="connect"),
    path("cameras/<str:name>/", views.camera_detail, name="camera"),
    path("cameras/<str:name>/snapshot.jpg", views.snapshot, name="snapshot"),
    path("cameras/<str:name>/recording/", recordings.recording_panel, name="recording"),
    path("cameras/<str:name>/recordings/<str:file>", recordings.recording_segment, name="recording-segment"),
    path("cameras/<str:name>/<str:action>", views.camera_action, name="camera-action"),
    path("operations/", views.operations, name="operations"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/pull", views.pull, name="pull"),
    # App processes (issue 16)
    path("apps/", apps.app_list, name="apps"),
    path("apps/<str:name>/", apps.app_detail, name="app"),
    path("apps/<str:name>/<str:action>", apps.app_action, name="app-action"),
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("favicon.ico", RedirectView.as_view(url=static("dashboard/favicon.svg"), permanent=True)),
]
