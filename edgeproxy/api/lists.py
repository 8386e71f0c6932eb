"""Paged, filtered lists: limit/offset paging and django-filter query filters, strict about input.

A page is a JSON array of records, like the full lists; where the page sits is in the headers:
``X-Total-Count`` (records matching the filters) and ``Link`` (RFC 8288, ``rel="next"`` and
``rel="prev"``). A limit over the maximum, a parameter the route does not know or a filter value
it cannot take is a 400 with the error body, never silently changed.
"""

from __future__ import annotations

import re

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from edgeproxy.api.errors import Invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
PAGING_PARAMETERS = ("limit", "offset")
_COUNT = re.compile(r"[0-9]+")  # any size: an offset past the end is an empty page


def _count_param(request, name: str, minimum: int, maximum: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _COUNT.fullmatch(raw) or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise Invalid(f"{name}: must be an integer {bounds}.", {name: [f"must be an integer {bounds}"]})
    return int(raw)


class ListPagination(LimitOffsetPagination):
    """``?limit=`` (1 to MAX_PAGE_SIZE, default DEFAULT_PAGE_SIZE) and ``?offset=`` (from 0)."""

    default_limit = DEFAULT_PAGE_SIZE
    max_limit = MAX_PAGE_SIZE
    template = None

    def get_limit(self, request):
        limit = _count_param(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request):
        return _count_param(request, self.offset_query_param, 0, None) or 0

    def get_paginated_response(self, data):
        response = Response(data)
        response["X-Total-Count"] = str(self.count)
        links = [f'<{url}>; rel="{rel}"' for rel, url in (("next", self.get_next_link()),
                                                           ("prev", self.get_previous_link())) if url]
        if links:
            response["Link"] = ", ".join(links)
        return response

    def get_paginated_response_schema(self, schema):
        return schema  # a page is an array of records (the paging is in the headers)

    def get_schema_operation_parameters(self, view):
        return []  # declared with their bounds in PAGE_PARAMETERS


class OptionalListPagination(ListPagination):
    """Pages only when ``limit`` or ``offset`` is given: without them, the whole list (routes that
    answered every record before paging existed)."""

    def get_limit(self, request):
        limit = super().get_limit(request)
        if not any(name in request.query_params for name in PAGING_PARAMETERS):
            return None
        return limit


PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}, OpenApiParameter.QUERY,
                     description=f"records per page, at most {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})"),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY,
                     description="records to skip (the Link header names the next and previous pages)"),
]
PAGE_HEADERS = [
    OpenApiParameter("X-Total-Count", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[200],
                     description="records matching the filters (on a page)"),
    OpenApiParameter("Link", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200],
                     description='the next and previous pages: <url>; rel="next", <url>; rel="prev"'),
]


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter's backend (an invalid value is a 400), and a query parameter that is neither a
    filter of the route's FilterSet nor a paging one is a 400 naming it."""

    def filter_queryset(self, request, queryset, view):
        known = set(self.get_filterset_class(view, queryset).base_filters) | set(PAGING_PARAMETERS)
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            raise Invalid(f"{unknown[0]}: unknown parameter; this list takes {', '.join(sorted(known))}.",
                          dict.fromkeys(unknown, ["unknown parameter"]))
        ordering = request.query_params.get("ordering")
        if ordering and "" in ordering.split(","):  # django-filter skips empty items: "name," is not "name"
            raise Invalid("ordering: must be field names separated by commas, none of them empty.",
                          {"ordering": ["empty field name"]})
        return super().filter_queryset(request, queryset, view)
