"""Template tags of app processes (issue 16): the apps that read a camera, for its page."""

from django import template

from processes import app_selectors

register = template.Library()


@register.simple_tag
def apps_reading(camera_name: str) -> list[dict]:
    return [{"name": app.name, "status": app.status} for app in app_selectors.apps_reading(camera_name)]
