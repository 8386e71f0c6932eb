"""Passwords are masked in URLs, key=value text and log records (pure logic)."""

import logging

from worker.redaction import RedactingFilter, mask_url, redact, register_secret


def test_mask_url_keeps_user_and_host():
    assert mask_url("rtsp://admin:pa55@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert mask_url("rtsp://10.0.0.2/live") == "rtsp://10.0.0.2/live"
    assert mask_url("rtsps://token@cam.example/x") == "rtsps://***@cam.example/x"


def test_redact_finds_credentials_in_free_text():
    text = "open rtsp://u:hunter2@h/x failed; password=hunter3 Token abcdef123456789"
    out = redact(text)
    assert "hunter2" not in out and "hunter3" not in out and "abcdef123456789" not in out
    assert "rtsp://u:***@h/x" in out


def test_registered_secrets_are_masked_anywhere():
    register_secret("Zq9-unusual-secret")
    assert "Zq9-unusual-secret" not in redact("the camera said Zq9-unusual-secret back")


def test_logging_filter_redacts_arguments_and_exceptions(caplog):
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("connecting to %s", "rtsp://a:topsecret@h/x")
        try:
            raise ValueError("bad rtsp://a:topsecret@h/x")
        except ValueError:
            logger.exception("failed")
    assert "topsecret" not in caplog.text
