"""A heartbeat's fingerprint: what of a host's report can change the control plane's records.

Every few seconds every host reports all of its cameras, and almost always nothing but their live
stream facts moved. The edge fingerprints the rest of its report (``fingerprint``) and sends it
with the report (its ``fingerprint`` key): the control plane compares that short string with the
one of the last report that changed nothing, instead of hashing every report of a thousand hosts
itself. One definition for both sides: a report from an older edge, without a fingerprint, is
fingerprinted by the control plane with this same function, so the two always agree.
"""

from __future__ import annotations

import hashlib
import json

import orjson

# The report's key that carries its fingerprint: {"stable": <digest>, "logs": {camera: <digest>}}.
FINGERPRINT_KEY = "fingerprint"

# Stream facts (worker.camera.keys.STATUS_FIELDS) that change at every beat of a streaming camera:
# measures and counters, never a reason to write its row.
LIVE_KEYS = frozenset({
    "fps", "last_frame_at", "updated_at", "demand", "packets", "keyframes", "decoded_frames", "decoded_keyframes",
    "published_frames", "decode_errors", "ring_entries", "ring_span_ms",
})

# The counters of a stream's ``recording`` report (issue 15): live facts too.
RECORDING_COUNTERS = frozenset({"bytes_written", "segments", "errors", "retention_deleted"})


def stable_part(stream: dict | None) -> dict | None:
    """A stream without its live facts: what decides whether the camera's row needs a write."""
    if not stream:
        return stream
    stable = {key: value for key, value in stream.items() if key not in LIVE_KEYS}
    if isinstance(stable.get("recording"), dict):  # a recording camera's counters grow at every beat
        stable["recording"] = {key: value for key, value in stable["recording"].items()
                               if key not in RECORDING_COUNTERS}
    return stable


def digest(value) -> str:
    """A short, stable digest of a JSON-like value (its keys in order)."""
    try:  # (every beat of every host passes here: orjson is several times faster than json)
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        text = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()


def fingerprint(report: dict, log_digests: dict[str, str] | None = None) -> dict:
    """The fingerprint of a report: ``stable``, the digest of its observations, the stable part of
    its streams, its apps and the host's own values (everything but the time, the live stream facts
    and the cameras' logs); ``logs``, the digest of each camera's logs it carries (an edge leaves out
    the logs that did not change, so they are apart). ``log_digests``: those already known by camera."""
    streams = report.get("streams") or {}
    stable = {name: stable_part(stream) for name, stream in streams.items()}
    rest = {key: value for key, value in report.items()
            if key not in ("streams", "observed_at", "cameras", FINGERPRINT_KEY)}
    cameras, logs = [], {}
    for entry in report.get("cameras") or []:
        if isinstance(entry, dict) and "logs" in entry:
            name = str(entry.get("name"))
            logs[name] = (log_digests or {}).get(name) or digest(entry["logs"])
            entry = {key: value for key, value in entry.items() if key != "logs"}
        cameras.append(entry)
    return {"stable": digest([rest, cameras, stable]), "logs": logs}


def sent_fingerprint(report: dict) -> dict | None:
    """The fingerprint an edge sent with ``report``, if it is one (else None: fingerprint it here)."""
    sent = report.get(FINGERPRINT_KEY)
    if (isinstance(sent, dict) and isinstance(sent.get("stable"), str) and isinstance(sent.get("logs"), dict)
            and all(isinstance(value, str) for value in sent["logs"].values())):
        return sent
    return None
