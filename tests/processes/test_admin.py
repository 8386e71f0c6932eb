"""The Django admin shows cameras but never writes them: a write there would skip the services'
validation and the operation on the camera's host."""

from __future__ import annotations

import re
import secrets

import pytest
import requests

USER = "admin-viewer"
CAMERA = "admin-ro-cam"
EDITABLE = ("name", "host", "desired_state", "image_tag", "rtsp_transport")


@pytest.fixture(scope="module")
def staff(system) -> requests.Session:
    """A session of a logged-in staff user (a superuser: the admin's strongest user)."""
    password = secrets.token_urlsafe(12)
    system._manage("create_api_token", USER, "--superuser", "--password", password)
    session = requests.Session()
    assert session.get(system.base_url + "/admin/login/", timeout=10).status_code == 200
    reply = session.post(system.base_url + "/admin/login/?next=/admin/", timeout=10, data={
        "username": USER, "password": password, "next": "/admin/",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]}, headers={"Referer": system.base_url + "/admin/login/"})
    assert reply.status_code == 200 and "Log out" in reply.text, reply.text[:500]
    return session


def row(system) -> tuple:
    found = system.sql("SELECT id, name, host_id, desired_state, image_tag, rtsp_transport, modified "
                       "FROM processes_camera WHERE name = %s", (CAMERA,))
    assert len(found) == 1
    return found[0]


def test_camera_admin_is_view_only(system, staff, rtsp_camera):
    created = system.post("/api/v1/process?wait=30", {"name": CAMERA, "rtsp_endpoint": rtsp_camera.url()})
    assert created.status_code == 200, created.text
    try:
        before = row(system)
        change_url = f"{system.base_url}/admin/processes/camera/{before[0]}/change/"

        page = staff.get(change_url, timeout=10)
        assert page.status_code == 200
        assert CAMERA in page.text and "edge-a" in page.text  # shown...
        for field in EDITABLE:  # ...but no input, select or textarea to change it
            assert not re.search(rf'<(input|select|textarea)[^>]*name="{field}"', page.text), field
        assert 'name="_save"' not in page.text

        # A hand-made POST (as if the form had the fields) changes nothing.
        attempt = staff.post(change_url, timeout=10, headers={"Referer": change_url}, data={
            "csrfmiddlewaretoken": staff.cookies["csrftoken"], "name": "renamed-by-admin",
            "desired_state": "stopped", "image_tag": "evil/camera:1", "rtsp_transport": "udp", "_save": "Save"})
        assert attempt.status_code == 403
        assert row(system) == before

        # No camera is added or deleted past the services either.
        assert staff.get(f"{system.base_url}/admin/processes/camera/add/", timeout=10).status_code == 403
        delete = staff.post(f"{system.base_url}/admin/processes/camera/{before[0]}/delete/", timeout=10,
                            headers={"Referer": change_url},
                            data={"csrfmiddlewaretoken": staff.cookies["csrftoken"], "post": "yes"})
        assert delete.status_code == 403
        assert row(system) == before
        assert system.camera(CAMERA)["name"] == CAMERA
    finally:
        system.delete(f"/api/v1/process/{CAMERA}?wait=30")
