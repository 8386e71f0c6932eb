"""Input serializers on their own: what they accept is what the services get."""

from __future__ import annotations

import pytest

from processes.api import ConnectSerializer, UpgradeSerializer


def test_connect_normalises_the_scheme_and_defaults_the_transport():
    data = ConnectSerializer(data={"name": "cam_1-a", "rtsp_endpoint": "RTSP://u:p@cam.local:554/s",
                                   "rtmp_endpoint": "RTMPS://live.example.com/app/key"})
    assert data.is_valid(), data.errors
    assert data.validated_data == {"name": "cam_1-a", "rtsp_endpoint": "rtsp://u:p@cam.local:554/s",
                                   "rtmp_endpoint": "rtmps://live.example.com/app/key", "rtsp_transport": "tcp"}


@pytest.mark.parametrize("name,valid", [("abc", True), ("a" * 63, True), ("0-start", True), ("ab", False),
                                        ("a" * 64, False), ("_start", False), ("UPPER", False), ("a.b.c", False)])
def test_connect_name_rule(name, valid):
    data = ConnectSerializer(data={"name": name, "rtsp_endpoint": "rtsp://127.0.0.1/x"})
    assert data.is_valid() is valid
    assert valid or "name" in data.errors


def test_connect_keeps_surrounding_spaces_and_so_refuses_them():
    data = ConnectSerializer(data={"name": " cam ", "rtsp_endpoint": " rtsp://127.0.0.1/x"})
    assert not data.is_valid()
    assert set(data.errors) == {"name", "rtsp_endpoint"}


@pytest.mark.parametrize("body,expected", [
    ({"name": "cam"}, {"name": "cam"}),
    ({"name": "cam", "newer_version": "", "image_tag": None},
     {"name": "cam", "newer_version": None, "image_tag": None}),
    ({"name": "cam", "newer_version": "0.0.10", "image_tag": "reg:5000/edgeproxy/camera:0.0.9"},
     {"name": "cam", "newer_version": "0.0.10", "image_tag": "reg:5000/edgeproxy/camera:0.0.9"}),
])
def test_upgrade_blank_versions_mean_none(body, expected):
    data = UpgradeSerializer(data=body)
    assert data.is_valid(), data.errors
    assert dict(data.validated_data) == expected


@pytest.mark.parametrize("body,field", [({"name": "cam", "newer_version": "bad tag"}, "newer_version"),
                                        ({"name": "cam", "image_tag": "no-tag"}, "image_tag"), ({}, "name")])
def test_upgrade_refuses_bad_references(body, field):
    data = UpgradeSerializer(data=body)
    assert not data.is_valid() and field in data.errors
