"""The fleet page (``/``) at scale: one page of camera cards, and a live refresh that sends only what changed.

The page is made of fragments, each rendered on its own and fingerprinted (a short hash of its HTML):
the summary (counts and problems), the hosts panel, the cameras section (its heading, grid and pager;
its fingerprint covers only which cameras are on the page and how many match) and one card per camera.
The page carries the fingerprints as one token; every couple of seconds ``dashboard.js`` asks
``?partial=changes&since=<token>`` (with the page's filters and page number), and gets 204 No Content
when nothing changed, else JSON with only the fragments and cards whose fingerprint moved and the new
token. Nothing is kept on the server between two refreshes: the token says what the browser shows.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from django.http import QueryDict
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from processes import filters
from processes import selectors as process_selectors
from processes.dashboard import selectors
from processes.outputs import PROCESS_STATUSES

FINGERPRINT_CHARS = 8
FRAGMENTS = ("fleet-summary", "fleet-hosts", "fleet-cameras")  # element ids, in the token's order
TOKEN_RULE = re.compile(
    rf"(?:[0-9a-f]{{{FINGERPRINT_CHARS}}}){{{len(FRAGMENTS)},{len(FRAGMENTS) + selectors.FLEET_PAGE_SIZE}}}")
VIEW_PARAMETERS = ("page", "partial", "since")  # the page's own; every other one is a camera filter


def fingerprint(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=FINGERPRINT_CHARS // 2).hexdigest()


@dataclass
class FleetView:
    """What the fleet page shows for one request: each fragment's HTML, and each card's."""

    fragments: dict[str, str]
    fragment_fingerprints: dict[str, str]
    cards: list[tuple[str, str]]  # (camera name, card HTML), in page order

    @property
    def token(self) -> str:
        return "".join(self.fragment_fingerprints[f] for f in FRAGMENTS) + "".join(
            fingerprint(html) for _, html in self.cards)

    def changes_since(self, token: str) -> dict | None:
        """The fragments and cards that differ from what ``token`` says the browser shows; None: none."""
        size = FINGERPRINT_CHARS
        parts = [token[i:i + size] for i in range(0, len(token), size)]
        shown = dict(zip(FRAGMENTS, parts, strict=False))
        shown_cards = parts[len(FRAGMENTS):]
        fragments = {f: self.fragments[f] for f in FRAGMENTS if shown.get(f) != self.fragment_fingerprints[f]}
        cards = {}
        if "fleet-cameras" not in fragments:  # the same cameras in the same order: only the cards that changed
            cards = {name: html for (name, html), seen in zip(self.cards, shown_cards, strict=False)
                     if fingerprint(html) != seen}
        if not fragments and not cards:
            return None
        return {"since": self.token, "fragments": fragments, "cards": cards}


def filter_query(query: QueryDict) -> QueryDict:
    """The query without the page's own parameters: the camera filters, as links keep them."""
    data = query.copy()
    for name in VIEW_PARAMETERS:
        data.pop(name, None)
    return data


def camera_filters(query: QueryDict) -> filters.CameraFilter:
    """The camera list's own filters (``processes.filters.CameraFilter``: name_prefix, host, status, ...)."""
    return filters.CameraFilter(filter_query(query), queryset=process_selectors.cameras())


def build(query: QueryDict, filterset: filters.CameraFilter) -> FleetView:
    """Every fragment of the page for these filters and ``?page=`` (invalid filters: no camera)."""
    if filterset.is_valid():
        page = selectors.fleet_page(filterset, query.get("page"))
    else:
        page = selectors.fleet_page(filters.CameraFilter(queryset=process_selectors.cameras().none()), 1)
    kept = filter_query(query)
    cards = [(c["name"], render_to_string("dashboard/_fleet_card.html", {"c": c})) for c in page["cards"]]
    summary = selectors.fleet_summary()
    hosts = selectors.fleet_hosts()
    fragments = {
        "fleet-summary": render_to_string("dashboard/_fleet_summary.html", {"summary": summary}),
        "fleet-hosts": render_to_string("dashboard/_fleet_hosts.html", {"hosts": hosts, "summary": summary}),
        "fleet-cameras": render_to_string("dashboard/_fleet_cameras.html", {
            "page": page["page"], "cards": [mark_safe(html) for _, html in cards],  # noqa: S308 - rendered here
            "query": kept.urlencode(), "filtered": bool(kept),
        }),
    }
    page_obj = page["page"]
    membership = "\n".join([str(page_obj.paginator.count), str(page_obj.number), str(page_obj.paginator.num_pages),
                            kept.urlencode(), *(name for name, _ in cards)])
    fingerprints = {"fleet-summary": fingerprint(fragments["fleet-summary"]),
                    "fleet-hosts": fingerprint(fragments["fleet-hosts"]),
                    "fleet-cameras": fingerprint(membership)}
    return FleetView(fragments, fingerprints, cards)


def form_values(query: QueryDict) -> dict:
    """The filter form as the person filled it in."""
    return {"name_prefix": query.get("name_prefix", ""), "host": query.get("host", ""),
            "status": query.get("status", ""), "statuses": PROCESS_STATUSES}
