from django import forms
from django.contrib import admin

from edgeproxy.contracts.names import IMAGE_RULE
from settings_app import services
from settings_app.models import EdgeSettings


class EdgeSettingsForm(forms.ModelForm):
    edge_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored secret. Stored encrypted; never shown.",
    )

    class Meta:
        model = EdgeSettings
        fields = ("name", "edge_key", "project_id", "region", "registry_id", "gateway_id", "camera_image",
                  "registry_url")

    def clean_camera_image(self):
        value = self.cleaned_data.get("camera_image", "")
        if value and not IMAGE_RULE.fullmatch(value):
            raise forms.ValidationError("Must be an image reference repository:version.")
        return value

    def clean_registry_url(self):
        from settings_app.registry import check_registry_url

        value = self.cleaned_data.get("registry_url", "").strip()
        problem = check_registry_url(value) if value else None
        if problem:
            raise forms.ValidationError(f"Registry URL {problem}")
        return value


@admin.register(EdgeSettings)
class EdgeSettingsAdmin(admin.ModelAdmin):
    form = EdgeSettingsForm
    list_display = ("name", "edge_key", "has_edge_secret", "camera_image", "registry_url", "modified")

    @admin.display(boolean=True, description="edge secret set")
    def has_edge_secret(self, obj):
        return obj.has_edge_secret

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        secret = form.cleaned_data.get("edge_secret")
        if secret:
            services.overwrite_settings(edge_secret=secret)
