"""Image versions compare as versions, not text (pure logic)."""

from settings_app.versions import highest_version, is_newer, local_tags, split_image


def test_versions_compare_as_versions():
    assert highest_version(["0.0.9", "0.0.10", "0.0.8.5"]) == "0.0.10"
    assert is_newer("0.0.10", "0.0.9")
    assert not is_newer("0.0.9", "0.0.10")


def test_tags_that_are_not_versions_are_never_newer():
    assert highest_version(["latest", "dev", "0.0.1"]) == "0.0.1"
    assert highest_version(["latest", "dev"]) is None
    assert not is_newer("latest", "0.0.1")
    assert not is_newer("0.0.2", "dev")


def test_split_image_handles_registry_ports():
    assert split_image("edgeproxy/camera:0.1.0") == ("edgeproxy/camera", "0.1.0")
    assert split_image("127.0.0.1:5000/edgeproxy/camera:0.1.0") == ("127.0.0.1:5000/edgeproxy/camera", "0.1.0")
    assert split_image("127.0.0.1:5000/edgeproxy/camera") == ("127.0.0.1:5000/edgeproxy/camera", "")


def test_local_tags_of_one_repository():
    images = [{"repository": "a/cam", "tag": "1.0"}, {"repository": "a/other", "tag": "2.0"},
              {"repository": "a/cam", "tag": "1.1"}]
    assert local_tags(images, "a/cam") == ["1.0", "1.1"]
