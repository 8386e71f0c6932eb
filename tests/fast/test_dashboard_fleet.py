"""The fleet page at scale, in process (issue 13): a page of cards with paging and search, and a live
refresh that answers only what changed. Chromium's side (snapshots only on screen, the refresh applied
in the page) is in tests/processes/test_dashboard.py."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from processes.dashboard.selectors import FLEET_PAGE_SIZE, TONE_COUNTS_KEY
from processes.models import Camera, EdgeHost

CAMERAS = 300
CARD = re.compile(r'<article class="card [^"]*" data-camera="([^"]+)"')


@pytest.fixture
def fleet(db, broker_redis):
    """300 cameras on 3 hosts (rows only, as a bulk seed writes them), running and streaming."""
    now = timezone.now()
    hosts = EdgeHost.objects.bulk_create([
        EdgeHost(name=f"rack-{i}", queue=f"host.rack-{i}", runtime="docker", last_heartbeat=now,
                 facts={"cpus": 4}, images=[{"repository": "edgeproxy/camera", "tag": "0.0.9"}]) for i in range(3)])
    Camera.objects.bulk_create([
        Camera(name=f"cam-{i:04d}", rtsp_endpoint_encrypted="x", rtsp_endpoint_masked="rtsp://10.0.0.1/s",
               image_tag="edgeproxy/camera:0.0.9", host=hosts[i % 3], status="running", observed_at=now,
               stream={"state": "streaming", "fps": 25.0, "width": 640, "height": 480})
        for i in range(CAMERAS)])
    cache.delete(TONE_COUNTS_KEY)  # (counts of another test's fleet)
    client = Client()
    client.force_login(User.objects.create_superuser("fleet-admin"))
    return client


def cards(response) -> list[str]:
    return CARD.findall(response.content.decode())


def token_of(response) -> str:
    return re.search(r'data-since="([0-9a-f]+)"', response.content.decode()).group(1)


def test_one_page_of_cards_with_paging_and_search(fleet):
    first = fleet.get("/")
    assert first.status_code == 200
    assert cards(first) == [f"cam-{i:04d}" for i in range(FLEET_PAGE_SIZE)]
    html = first.content.decode()
    assert f"{CAMERAS}, 1–{FLEET_PAGE_SIZE} shown" in html
    assert 'rel="next" href="?page=2"' in html
    assert "streaming" in html and "3/3" in html  # the summary counts the whole fleet
    assert re.search(rf'stat--ok"><span class="stat-value">{CAMERAS}<', html)
    assert 'href="/apps/?host=rack-1"' in html  # each host row leads to the apps placed on it
    assert fleet.get("/apps/?host=rack-1").status_code == 200

    last = fleet.get("/?page=7")
    assert cards(last) == [f"cam-{i:04d}" for i in range(6 * FLEET_PAGE_SIZE, CAMERAS)]

    found = fleet.get("/?name_prefix=cam-012")
    assert cards(found) == [f"cam-012{i}" for i in range(10)]
    assert "10 matching" in found.content.decode()
    by_host = fleet.get("/?host=rack-1&page=2")
    assert cards(by_host) == [f"cam-{i:04d}" for i in range(1 + 3 * FLEET_PAGE_SIZE, CAMERAS, 3)][:FLEET_PAGE_SIZE]
    assert 'href="?host=rack-1&amp;page=1"' in by_host.content.decode()  # the pager keeps the filter

    assert cards(fleet.get("/?ordering=-name"))[:2] == ["cam-0299", "cam-0298"]  # the list's ordering too
    assert cards(fleet.get("/?ordering=status&page=2"))[0] == f"cam-{FLEET_PAGE_SIZE:04d}"  # (ties by name)

    bad = fleet.get("/?name_prefix=Not%20a%20name")
    assert bad.status_code == 400
    assert "name_prefix: must be 1 to 63 characters" in bad.content.decode()
    assert cards(bad) == []


def test_the_live_refresh_sends_only_what_changed(fleet):
    page = fleet.get("/?page=2")
    token = token_of(page)
    changes = f"/?page=2&partial=changes&since={token}"

    unchanged = fleet.get(changes)
    assert unchanged.status_code == 204 and unchanged.content == b""

    Camera.objects.filter(name="cam-0050").update(stream={"state": "streaming", "fps": 12.5, "width": 640,
                                                          "height": 480})
    Camera.objects.filter(name="cam-0200").update(stream={"state": "streaming", "fps": 5.0})  # on page 5
    changed = fleet.get(changes)
    assert changed.status_code == 200
    body = changed.json()
    assert list(body["cards"]) == ["cam-0050"]
    assert "12.5 fps" in body["cards"]["cam-0050"]
    assert body["fragments"] == {}  # the counts did not move: still streaming
    assert fleet.get(f"/?page=2&partial=changes&since={body['since']}").status_code == 204

    # A camera in error moves the counts: the summary comes along (once the counts' cache expires).
    Camera.objects.filter(name="cam-0051").update(status="error")
    cache.delete(TONE_COUNTS_KEY)
    body = fleet.get(f"/?page=2&partial=changes&since={body['since']}").json()
    assert list(body["cards"]) == ["cam-0051"] and list(body["fragments"]) == ["fleet-summary"]
    assert "cam-0051" in body["fragments"]["fleet-summary"]  # among the problems

    # A camera gone from the page: the page's cameras section is sent whole.
    Camera.objects.filter(name="cam-0060").delete()
    body = fleet.get(f"/?page=2&partial=changes&since={body['since']}").json()
    assert "fleet-cameras" in body["fragments"] and body["cards"] == {}
    assert "cam-0060" not in body["fragments"]["fleet-cameras"]
    assert "cam-0096" in body["fragments"]["fleet-cameras"]  # from page 3

    for query in ("since=nonsense", "since=", "name_prefix=UPPER&since=" + token):
        refused = fleet.get(f"/?partial=changes&{query}")
        assert refused.status_code == 400 and set(refused.json()) >= {"code", "message"}, query


def test_the_page_costs_queries_per_page_not_per_camera(fleet, django_assert_max_num_queries):
    fleet.get("/")  # warm: the session and user
    with django_assert_max_num_queries(16):
        fleet.get("/?page=3")
    Camera.objects.bulk_create([
        Camera(name=f"more-{i:04d}", rtsp_endpoint_encrypted="x", image_tag="edgeproxy/camera:0.0.9",
               host=EdgeHost.objects.get(name="rack-0"), status="exited") for i in range(200)])
    with django_assert_max_num_queries(16):
        assert len(cards(fleet.get("/?page=3"))) == FLEET_PAGE_SIZE
