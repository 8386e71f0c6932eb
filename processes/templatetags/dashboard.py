"""Formatting for the dashboard templates: sizes, ages, numbers."""

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def bytes_h(value) -> str:
    """1536 -> '1.5 KiB'."""
    if not isinstance(value, int | float) or value < 0:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "–"


@register.filter
def ago(value) -> str:
    """A datetime as '4 s ago', '3 min ago', '2 h ago' or a date."""
    if not value:
        return "never"
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


@register.filter
def seconds_h(value) -> str:
    if not isinstance(value, int | float):
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


@register.filter
def fps(value) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value:.1f}"


@register.filter
def percent_of(part, whole) -> float:
    try:
        return max(0.0, min(100.0, 100.0 * float(part) / float(whole)))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0
