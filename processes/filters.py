"""Query filters of the paged lists (django-filter): cameras, edge hosts and operations.

Each FilterSet is the one definition of what its list accepts; ``processes.api`` documents the
same parameters in the OpenAPI schema (``FILTER_PARAMETERS``) with their rules.
"""

from __future__ import annotations

import re

import django_filters
from django.core.validators import RegexValidator

from edgeproxy.api import schema as oas
from processes import selectors
from processes.models import Camera, DesiredState, EdgeHost, Operation, OperationKind, OperationState
from processes.outputs import PROCESS_STATUSES

NAME_PREFIX_RULE = re.compile(r"[a-z0-9_-]{1,63}")
HOST_NAME_RULE = re.compile(r"[^\x00]{1,63}")
_BOOLEAN = (("true", "true"), ("false", "false"))


def _choices(values) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def _ordering_rule(filter_: django_filters.OrderingFilter) -> re.Pattern:
    """Comma-separated choices of an OrderingFilter, as a rule (for the schema)."""
    one = "|".join(re.escape(value) for value, _ in filter_.extra["choices"])
    return re.compile(f"(?:{one})(?:,(?:{one}))*")


class CameraFilter(django_filters.FilterSet):
    host = django_filters.CharFilter(field_name="host__name", max_length=63)
    status = django_filters.ChoiceFilter(choices=_choices(PROCESS_STATUSES), method="filter_status")
    desired_state = django_filters.ChoiceFilter(choices=DesiredState.choices)
    name_prefix = django_filters.CharFilter(
        field_name="name", lookup_expr="startswith", max_length=63,
        validators=[RegexValidator(rf"^{NAME_PREFIX_RULE.pattern}\Z",  # RegexValidator searches: the whole value
                                   "must be 1 to 63 characters of a-z, 0-9, _ and -.")],
    )
    ordering = django_filters.OrderingFilter(fields=("name", "created", "modified", "status"))

    class Meta:
        model = Camera
        fields = []

    def filter_status(self, queryset, name, value):
        return queryset.filter(selectors.camera_shown_status_filter(value))


class HostFilter(django_filters.FilterSet):
    online = django_filters.ChoiceFilter(choices=_BOOLEAN, method="filter_online")
    name_prefix = django_filters.CharFilter(field_name="name", lookup_expr="startswith", max_length=63)
    ordering = django_filters.OrderingFilter(fields=("name", "created", "last_heartbeat"))

    class Meta:
        model = EdgeHost
        fields = []

    def filter_online(self, queryset, name, value):
        online = queryset.filter(last_heartbeat__gte=EdgeHost.online_cutoff())
        return online if value == "true" else queryset.exclude(id__in=online.values("id"))


class OperationFilter(django_filters.FilterSet):
    camera = django_filters.CharFilter(field_name="camera_name", max_length=63)
    host = django_filters.CharFilter(field_name="host__name", max_length=63)
    kind = django_filters.ChoiceFilter(choices=OperationKind.choices)
    state = django_filters.ChoiceFilter(choices=OperationState.choices)
    ordering = django_filters.OrderingFilter(fields=("created", "kind", "state"))

    class Meta:
        model = Operation
        fields = []


def _ordering_parameter(filterset, default: str):
    filter_ = filterset.base_filters["ordering"]
    return oas.query("ordering", description=f"comma-separated fields, '-' for descending (default {default})",
                     pattern=_ordering_rule(filter_))


CAMERA_PARAMETERS = [
    oas.query("host", description="only the cameras of this edge host", pattern=HOST_NAME_RULE),
    oas.query("status", description="only the cameras with this status (as shown: offline included)",
              pattern=re.compile("|".join(PROCESS_STATUSES))),
    oas.query("desired_state", description="only the cameras driven towards this state",
              pattern=re.compile("|".join(DesiredState.values))),
    oas.query("name_prefix", description="only the cameras whose name starts with this", pattern=NAME_PREFIX_RULE),
    _ordering_parameter(CameraFilter, "name"),
]
HOST_PARAMETERS = [
    oas.query("online", description="true: only hosts heard from lately; false: only the others",
              pattern=re.compile("true|false")),
    oas.query("name_prefix", description="only the hosts whose name starts with this", pattern=HOST_NAME_RULE),
    _ordering_parameter(HostFilter, "name"),
]
OPERATION_PARAMETERS = [
    oas.query("camera", description="only the operations of this camera", pattern=HOST_NAME_RULE),
    oas.query("host", description="only the operations sent to this edge host", pattern=HOST_NAME_RULE),
    oas.query("kind", description="only operations of this kind", pattern=re.compile("|".join(OperationKind.values))),
    oas.query("state", description="only operations in this state",
              pattern=re.compile("|".join(OperationState.values))),
    _ordering_parameter(OperationFilter, "-created"),
]
