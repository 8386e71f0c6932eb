"""Camera specs sealed to a host open only with that host's key (pure logic, real libsodium)."""

import pytest
from nacl.exceptions import CryptoError

from worker import sealing


def test_only_the_host_key_opens_a_sealed_spec(tmp_path):
    host_key = sealing.load_or_create_key(tmp_path / "a.key")
    other_key = sealing.load_or_create_key(tmp_path / "b.key")
    sealed = sealing.seal(sealing.public_key_text(host_key), {"rtsp_url": "rtsp://u:p@h/x"})
    assert "rtsp" not in sealed
    assert sealing.unseal(host_key, sealed) == {"rtsp_url": "rtsp://u:p@h/x"}
    with pytest.raises(CryptoError):
        sealing.unseal(other_key, sealed)


def test_key_is_kept_private_and_reused(tmp_path):
    first = sealing.load_or_create_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert bytes(sealing.load_or_create_key(tmp_path / "k")) == bytes(first)
