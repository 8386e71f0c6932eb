"""The app image allow-list, edited in the admin (App image rules); apps themselves are read-only
here: they change only through the services (API, dashboard), which queue their operations."""

from django.contrib import admin

from processes.models import AppImageRule, AppProcess


@admin.register(AppImageRule)
class AppImageRuleAdmin(admin.ModelAdmin):
    list_display = ("repository", "host_network", "note", "created")
    search_fields = ("repository",)


@admin.register(AppProcess)
class AppProcessAdmin(admin.ModelAdmin):
    list_display = ("name", "docker_repository", "docker_version", "host", "status", "desired_state")
    search_fields = ("name",)
    exclude = ("env_vars",)  # secret values are encrypted; the API shows them masked

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
