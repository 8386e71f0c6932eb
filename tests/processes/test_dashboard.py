"""The dashboard as a person uses it: headless Chromium (Debian's, driven by Playwright) against
the running system and a real RTSP camera. Screenshots go to the artifacts directory."""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path

import cv2
import numpy as np
import playwright.sync_api as playwright_api
import pytest

from tests.support.services import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER = "dash-admin"
LIVE = "dash-cam"
BROKEN = "dash-broken"
UPGRADE_TAG = "dash-2"

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def password(system) -> str:
    secret = secrets.token_urlsafe(12)
    system._manage("create_api_token", USER, "--superuser", f"--password={secret}")
    return secret


@pytest.fixture(scope="module")
def page(system, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: bin/bootstrap --test installs Debian's chromium")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1440, "height": 960}, base_url=system.base_url,
        )
        context.set_default_timeout(20_000)
        tab = context.pages[0] if context.pages else context.new_page()
        tab.on("dialog", lambda dialog: dialog.accept())  # "Delete camera …?"
        try:
            yield tab
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(artifacts) -> Path:
    path = artifacts / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_versions(system, repository: str, host: str = "edge-a") -> list[str]:
    body = system.get(f"/api/v1/devicedockerimages?tag={repository}").json()
    return next((h["local_versions"] for h in body["hosts"] if h["host"] == host), [])


def expect(locator):
    return playwright_api.expect(locator)


def messages(page) -> list[str]:
    return [m.strip() for m in page.locator(".message").all_inner_texts()]


def snapshot_image(page, selector: str) -> np.ndarray:
    """What the person sees in the snapshot element, as pixels."""
    png = page.locator(selector).screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_login_is_required_and_uses_the_admin_account(system, page, password, shots):
    page.goto("/")
    assert "/login/" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".message--error")).to_contain_text("correct username and password")

    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Fleet")
    host = page.locator(".host[data-host=edge-a]")
    expect(host.locator(".pill")).to_have_text("online")
    expect(host).to_contain_text("cores")  # CPU and memory from the host's facts
    expect(host).to_contain_text("GiB")

    # The assets come from WhiteNoise under gunicorn (DEBUG off): the page is styled.
    assert page.request.get("/static/dashboard/dashboard.css").status == 200
    assert page.request.get("/static/admin/css/base.css").status == 200
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).position") == "sticky"


def test_connect_form_shows_the_api_validation_message(system, page, shots):
    page.goto("/connect/")
    page.fill("input[name=name]", "dash-bad")
    page.fill("input[name=rtsp_endpoint]", "http://camera.local/stream")
    page.click("button:has-text('Connect')")
    api = system.post("/api/v1/process", {"name": "dash-bad", "rtsp_endpoint": "http://camera.local/stream"})
    assert api.status_code == 400
    expect(page.locator(".message--error")).to_have_text(api.json()["message"])
    expect(page.locator(".has-error .field-error")).to_have_text("must start with rtsp:// or rtsps://.")
    assert page.input_value("input[name=name]") == "dash-bad"  # what was typed stays
    page.screenshot(path=shots / "connect-invalid.png", full_page=True)
    assert system.get("/api/v1/process/dash-bad").status_code == 404  # nothing was created

    page.fill("input[name=name]", "Dash Bad")
    page.fill("input[name=rtsp_endpoint]", "rtsp://127.0.0.1:9/x")
    page.click("button:has-text('Connect')")
    expect(page.locator(".message--error")).to_contain_text("name: must be 3 to 63 characters")


def test_connect_watch_upgrade_and_stop_a_live_camera(system, rtsp_camera, camera_image, docker_client, page, shots):
    # A camera that cannot connect, next to the live one: it must stand out on the fleet page.
    broken = system.post("/api/v1/process", {"name": BROKEN, "rtsp_endpoint": "rtsp://127.0.0.1:9/none"})
    assert broken.status_code == 202, broken.text

    page.goto("/connect/")
    page.fill("input[name=name]", LIVE)
    page.fill("input[name=rtsp_endpoint]", rtsp_camera.url())
    page.click("button:has-text('Connect')")
    page.wait_for_url(f"**/cameras/{LIVE}/")
    assert any(f"Camera {LIVE} is being connected" in m for m in messages(page))

    status = page.locator("#camera-status")
    expect(status.locator("[data-status]")).to_have_text("running", timeout=30_000)
    expect(status.locator("[data-stream] .pill")).to_have_text("streaming", timeout=30_000)
    expect(status).to_contain_text(f"{rtsp_camera.width}×{rtsp_camera.height}")
    expect(status).to_contain_text("edge-a")

    # The snapshot appears, and it is live: two looks a moment apart differ (the ball moves).
    snap = f"#snap-{LIVE}"
    expect(page.locator(f"{snap}.snap--live")).to_be_visible(timeout=20_000)
    first = snapshot_image(page, f"{snap} img")
    page.screenshot(path=shots / "camera-live.png", full_page=True)
    first_src = page.get_attribute(f"{snap} img", "src")
    page.wait_for_function(f"document.querySelector('{snap} img').src !== {first_src!r}", timeout=10_000)
    page.wait_for_timeout(300)
    second = snapshot_image(page, f"{snap} img")
    assert first.shape == second.shape and first.shape[0] > 100
    changed = np.mean(np.any(first != second, axis=2))
    assert changed > 0.001, f"the snapshot did not change ({changed:.5f} of the pixels)"
    assert (first > 200).all(axis=2).any()  # a picture (the white ball), not an empty box
    cv2.imwrite(str(shots / "snapshot-1.png"), first)
    cv2.imwrite(str(shots / "snapshot-2.png"), second)

    # The session reaches the frame itself, on the dashboard route and on the API route.
    for url in (f"/cameras/{LIVE}/snapshot.jpg", f"/api/v1/process/{LIVE}/frame.jpg"):
        frame = page.request.get(url)
        assert frame.status == 200 and frame.headers["content-type"] == "image/jpeg", url
        image = cv2.imdecode(np.frombuffer(frame.body(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (rtsp_camera.height, rtsp_camera.width, 3)

    # Its redacted log lines arrive with the heartbeats.
    expect(page.locator("#logs pre.log").first).to_contain_text("started", timeout=20_000)

    # The fleet page: the live camera's card, the broken one among the problems.
    page.goto("/")
    card = page.locator(f".card[data-camera={LIVE}]")
    expect(card.locator("[data-status]")).to_have_text("running")
    expect(card).to_contain_text("edge-a")
    expect(card).to_contain_text("fps")
    expect(page.locator(f"#snap-{LIVE}.snap--live")).to_be_visible(timeout=20_000)
    expect(page.locator(".problems")).to_contain_text(BROKEN, timeout=30_000)
    expect(page.locator(f".card[data-camera={BROKEN}]")).to_have_class(re.compile(r"\bcard--bad\b"), timeout=30_000)
    page.wait_for_timeout(1500)  # both snapshots settled: the broken one shows its reason
    page.screenshot(path=shots / "fleet.png", full_page=True)

    # A form post without the CSRF token changes nothing.
    forged = page.request.post(f"/cameras/{LIVE}/stop", max_redirects=0)
    assert forged.status == 403
    assert system.camera(LIVE)["desired_state"] == "running"

    # Upgrade to another image of its host, chosen from the host's inventory.
    repository = camera_image[0].rsplit(":", 1)[0]
    docker_client.images.get(camera_image[0]).tag(repository, UPGRADE_TAG)
    try:
        wait_until(lambda: UPGRADE_TAG in local_versions(system, repository), 30, interval=0.3,
                   message="edge-a to report the new image")
        page.goto(f"/cameras/{LIVE}/")
        page.select_option("select[name=version]", UPGRADE_TAG)
        page.click("button[name=upgrade]")
        page.wait_for_url(f"**/cameras/{LIVE}/")
        assert f"Upgrading camera {LIVE} to {UPGRADE_TAG}." in messages(page)
        latest = page.locator("#history tr[data-operation]").first
        expect(latest).to_contain_text("upgrade")
        expect(latest).to_contain_text("succeeded", timeout=60_000)
        page.reload()
        expect(page.locator("section[aria-label=Upgrade] code").first).to_have_text(f"{repository}:{UPGRADE_TAG}")
        expect(page.locator(f"{snap}.snap--live")).to_be_visible(timeout=20_000)
        assert system.camera(LIVE)["image_tag"] == f"{repository}:{UPGRADE_TAG}"
    finally:
        docker_client.images.remove(f"{repository}:{UPGRADE_TAG}")  # only the tag: the image stays

    # Stop: the page says so, the status follows, and the snapshot says why there is no frame.
    page.click("button[name=stop]")
    page.wait_for_url(f"**/cameras/{LIVE}/")
    assert f"Stopping camera {LIVE}." in messages(page)
    expect(page.locator("#camera-status [data-status]")).to_have_text("stopped", timeout=30_000)
    expect(page.locator(f"{snap}.snap--none .snap-msg")).not_to_be_empty(timeout=15_000)
    expect(page.locator("#history tr[data-operation]").first).to_contain_text("stop")
    expect(page.locator("#history tr[data-operation]").first).to_contain_text("succeeded")
    page.screenshot(path=shots / "camera-stopped.png", full_page=True)
    assert system.camera(LIVE)["status"] == "stopped"


def test_pull_an_image_from_settings_and_watch_its_progress(system, registry, docker_client, camera_image, page,
                                                            shots):
    from tests.support.registry import build_variant, push, untag

    page.goto("/settings/")
    page.fill("input[name=image]", "not an image")
    page.click("button:has-text('Pull')")
    expect(page.locator(".message--error")).to_have_text("image: must be an image reference repository:version.")

    # An image with a layer of its own, in the local registry only: the pull has bytes to fetch.
    repository, version = f"{registry.host}/dash/camera", "0.0.1"
    image = f"{repository}:{version}"
    build_variant(docker_client, camera_image[0], image, version, pad_bytes=4 << 20)
    push(docker_client, repository, version)
    untag(docker_client, image)
    try:
        page.fill("input[name=image]", image)
        page.select_option("select[name=host]", "edge-a")
        page.click("button:has-text('Pull')")
        page.wait_for_url("**/operations/")
        assert f"Pulling {image} on 1 host." in messages(page)
        row = page.locator("tr[data-operation]").filter(has_text=image).first
        expect(row).to_contain_text("succeeded", timeout=60_000)
        expect(row.locator(".progress-bar")).to_have_attribute("style", re.compile(r"width: 100(\.0)?%"))
        expect(row).to_contain_text(re.compile(r"100% · [\d.]+ MiB of [\d.]+ MiB · layers (\d+)/\1"))
        page.screenshot(path=shots / "operations-pull.png", full_page=True)
        assert docker_client.images.get(image)  # really pulled on the host's engine
    finally:
        untag(docker_client, image)


def test_operations_settings_and_delete(system, page, shots):
    page.goto("/operations/")
    rows = page.locator("section[aria-label='Recent operations'] tr[data-operation]")
    expect(rows.filter(has_text=LIVE).filter(has_text="connect")).to_contain_text("succeeded")
    expect(rows.filter(has_text=LIVE).filter(has_text="stop")).to_contain_text("succeeded")
    page.screenshot(path=shots / "operations.png", full_page=True)

    page.goto("/settings/")
    assert page.get_attribute("#link-flower", "href") == "http://127.0.0.1:5555/"
    assert page.get_attribute("#link-api-docs", "href") == "/api/docs/"
    assert page.request.get("/api/docs/").status == 200  # the same session opens the API docs
    page.screenshot(path=shots / "settings.png", full_page=True)
    page.click("#link-admin")
    expect(page.locator("#site-name")).to_be_visible()  # the admin, already logged in
    assert "/admin/" in page.url

    # Delete, confirmed in the dialog: back on the fleet page, and the camera goes away.
    page.goto(f"/cameras/{LIVE}/")
    page.click("button[name=delete]")
    page.wait_for_url(system.base_url + "/")
    assert f"Deleting camera {LIVE}." in messages(page)
    expect(page.locator(f".card[data-camera={LIVE}]")).to_have_count(0, timeout=30_000)
    assert system.get(f"/api/v1/process/{LIVE}").status_code == 404

    # A camera that is gone: its page says so instead of failing.
    page.goto(f"/cameras/{LIVE}/")
    assert page.url == system.base_url + "/"
    assert any("No camera named" in m for m in messages(page))
    system.delete(f"/api/v1/process/{BROKEN}?wait=30")



# --- the fleet page at scale (issue 13) ---------------------------------------------------------

SCALE_CAMERAS = 300
SCALE_SEED = """
from processes.models import Camera, EdgeHost
hosts = EdgeHost.objects.bulk_create([EdgeHost(name=f"scale-{i}", queue=f"host.scale-{i}",
    images=[{"repository": "edgeproxy/camera", "tag": "0.0.9"}]) for i in range(3)])
Camera.objects.bulk_create([Camera(name=f"zz-scale-{i:03d}", rtsp_endpoint_encrypted="-",
    rtsp_endpoint_masked="rtsp://10.0.0.1/s", image_tag="edgeproxy/camera:0.0.9", host=hosts[i % 3],
    status="running") for i in range(COUNT)])
""".replace("COUNT", str(SCALE_CAMERAS))
SCALE_CLEANUP = """
from processes.models import Camera, EdgeHost
Camera.objects.filter(name__startswith="zz-scale-").delete()
EdgeHost.objects.filter(name__startswith="scale-").delete()
"""
ON_SCREEN = """() => Array.from(document.querySelectorAll('.card')).filter(card => {
  const r = card.querySelector('img[data-snapshot]').getBoundingClientRect();
  return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
}).map(card => card.dataset.camera)"""


def test_the_fleet_page_at_scale_pages_searches_and_refreshes_only_what_changed(system, page, password, shots):
    """300 cameras (rows, as a bulk seed writes them; their hosts never beat): one page of cards with
    paging, a search that narrows it, snapshots asked only for cards on screen, and a live refresh that
    carries only the camera that changed."""
    asked: list[str] = []  # snapshot URLs the page asked for
    answers: list = []  # the live refresh's answers

    def snapshot_asked(request):
        if "snapshot.jpg" in request.url:
            asked.append(request.url)

    def refresh_answered(response):
        if "partial=changes" in response.url:
            answers.append(response)

    page.goto("/")
    if "/login/" in page.url:  # (run on its own)
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Fleet")
    system._manage("shell", "-c", SCALE_SEED)
    page.on("request", snapshot_asked)
    page.on("response", refresh_answered)
    try:
        page.goto("/?host=scale-1")
        cards = page.locator(".card")
        expect(cards).to_have_count(48)  # one page (FLEET_PAGE_SIZE), not the host's 100
        expect(page.locator(".pager")).to_contain_text("page 1 of 3")
        page.click(".pager a[rel=next]")
        page.wait_for_url("**/?host=scale-1&page=2")
        expect(cards.first).to_have_attribute("data-camera", "zz-scale-145")  # the 49th of scale-1's cameras

        page.fill("input[name=name_prefix]", "zz-scale-01")
        page.fill("input[name=host]", "")
        page.click("button:has-text('Find')")
        expect(cards).to_have_count(10)
        assert page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.camera)") == [
            f"zz-scale-01{i}" for i in range(10)]

        # Snapshots: only the cards on screen ask for theirs; the others once scrolled to.
        page.goto("about:blank")
        asked.clear()  # (no snapshot request of the pages before is counted)
        page.goto("/?name_prefix=zz-scale#fleet-cameras")  # the first rows of cards on screen, the rest below
        expect(cards).to_have_count(48)
        on_screen = page.evaluate(ON_SCREEN)
        assert 0 < len(on_screen) < 24, on_screen
        wait_until(lambda: (page.wait_for_timeout(50), {u.split("/")[-2] for u in asked} >= set(on_screen))[1],
                   10, message="the snapshots of the cards on screen")
        assert {u.split("/")[-2] for u in asked} == set(on_screen)  # none of the 48 - n off screen
        expect(page.locator(".card[data-camera=zz-scale-000] .snap-msg")).to_contain_text("offline")
        cards.last.scroll_into_view_if_needed()
        wait_until(lambda: (page.wait_for_timeout(50), any("/zz-scale-047/" in u for u in asked))[1], 10,
                   message="the last card's snapshot once on screen")

        # The live refresh: one camera changes (a newer image on its host); only its card comes.
        answers.clear()
        page.evaluate("document.querySelector('.card[data-camera=zz-scale-004]').dataset.mark = 'kept'")
        # Nothing changed on the page's cameras: a refresh sends none (edge-a beating may change the hosts part).
        wait_until(lambda: (page.wait_for_timeout(50), any(a.status in (200, 204) for a in answers))[1], 10,
                   message="a refresh answered")
        assert not [a for a in answers if a.status == 200 and a.json()["cards"]]
        with contextlib.closing(system.connect_database()) as conn:
            conn.execute("UPDATE processes_camera SET image_tag = 'edgeproxy/camera:0.0.1' WHERE name = 'zz-scale-003'")
        changed = page.locator(".card[data-camera=zz-scale-003]")
        expect(changed).to_contain_text("upgrade 0.0.9", timeout=15_000)
        bodies = [a.json() for a in answers if a.status == 200]
        assert [list(b["cards"]) for b in bodies if b["cards"]] == [["zz-scale-003"]]
        assert not any("fleet-cameras" in b["fragments"] for b in bodies)  # the page's cameras were not resent
        assert page.evaluate("document.querySelector('.card[data-camera=zz-scale-004]').dataset.mark") == "kept"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=shots / "fleet-at-scale.png")
    finally:
        page.remove_listener("request", snapshot_asked)
        page.remove_listener("response", refresh_answered)
        system._manage("shell", "-c", SCALE_CLEANUP)
