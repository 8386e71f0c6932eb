"""Image pulls through the Docker SDK's pull stream, with progress (bytes and layers done).

``repository`` may name its registry (``127.0.0.1:5000/edgeproxy/camera``): the engine decides
how to reach it (loopback registries are plain HTTP by default, others need TLS or the engine's
``insecure-registries``). Progress only ever rises: ``seq``, ``bytes_done`` and ``layers_done``
never go down, so a consumer may apply the newest report and drop late ones.
"""

from __future__ import annotations

import json
import time

import docker.errors
import requests.exceptions

from worker.redaction import redact
from worker.runtimes.base import RuntimeError_

_DONE = ("Pull complete", "Already exists")
_FETCHED = ("Download complete", "Verifying Checksum", "Extracting")


class PullProgress:
    """Folds Docker's per-layer status lines into one progress dict."""

    def __init__(self, image: str):
        self.image = image
        self.tag = image.rsplit(":", 1)[-1]
        self.layers: dict[str, dict] = {}
        self.status = "pulling"
        self.seq = 0

    def feed(self, event: dict) -> None:
        layer = event.get("id")
        status = event.get("status", "")
        if not layer or layer == self.tag or " " in layer:
            if status.startswith("Status:") or status.startswith("Digest:"):
                self.status = status
            return
        entry = self.layers.setdefault(layer, {"current": 0, "total": 0, "done": False})
        detail = event.get("progressDetail") or {}
        if status in ("Downloading", "Extracting") and detail.get("total") and not entry["total"]:
            entry["total"] = int(detail["total"])
        if status == "Downloading":
            entry["current"] = max(entry["current"], int(detail.get("current") or 0))
        elif status in _FETCHED or status in _DONE:
            entry["current"] = max(entry["current"], entry["total"])
            entry["done"] = entry["done"] or status in _DONE
        if entry["total"]:
            entry["current"] = min(entry["current"], entry["total"])

    def as_dict(self) -> dict:
        # Rises within a pull and across repeated deliveries of it (microseconds of wall clock).
        self.seq = max(self.seq + 1, time.time_ns() // 1000)
        total = sum(layer["total"] for layer in self.layers.values())
        done = sum(layer["current"] for layer in self.layers.values())
        finished = self.status.startswith("Status:")
        return {
            "seq": self.seq,
            "phase": "pulling",
            "image": self.image,
            "status": self.status,
            "layers_total": len(self.layers),
            "layers_done": sum(1 for layer in self.layers.values() if layer["done"]),
            "bytes_total": total,
            "bytes_done": done,
            "percent": round(100.0 * done / total, 1) if total else (100.0 if finished else 0.0),
        }

    def final(self) -> dict:
        final = self.as_dict()
        final.update(phase="done", percent=100.0, bytes_done=final["bytes_total"], layers_done=final["layers_total"])
        return final


def explain(error_text: str, image: str) -> str:
    """A clear sentence for a failed pull, without the daemon's whole dump."""
    text = error_text.lower()
    if "server gave http response to https client" in text:
        return (f"the registry of {image} answers plain HTTP, but this Docker engine only talks HTTPS to it "
                "(add it to the engine's insecure-registries)")
    if any(s in text for s in ("manifest unknown", "not found", "pull access denied", "does not exist",
                               "name unknown", "repository name not known")):
        return f"image {image} does not exist on its registry (or needs credentials)"
    if any(s in text for s in ("unauthorized", "authentication required", "denied")):
        return f"the registry of {image} refused the pull: it needs credentials"
    if any(s in text for s in ("dial tcp", "no such host", "connection refused", "timeout", "i/o timeout",
                               "network is unreachable", "server misbehaving", "tls", "eof", "no route to host")):
        return f"the registry of {image} cannot be reached"
    if "invalid reference format" in text:
        return f"{image} is not a valid image reference"
    return f"image {image} could not be pulled: {redact(' '.join(error_text.split()))[:200]}"


def pull(client: docker.DockerClient, repository: str, tag: str, progress) -> tuple[dict, str]:
    """Pull ``repository:tag``; calls ``progress(dict)`` per event; returns (final progress, log)."""
    image = f"{repository}:{tag}"
    state = PullProgress(image)
    log_lines = []
    try:
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError_(explain(str(event.get("error", "")), image))
            log_lines.append(json.dumps(event))
            state.feed(event)
            progress(state.as_dict())
    except docker.errors.APIError as exc:
        raise RuntimeError_(explain(str(exc.explanation or exc), image)) from None
    except requests.exceptions.ConnectionError:
        raise RuntimeError_(f"the Docker engine is not reachable (while pulling {image})") from None
    except requests.exceptions.RequestException:
        raise RuntimeError_(f"the Docker engine did not answer in time while pulling {image}") from None
    except docker.errors.DockerException as exc:
        raise RuntimeError_(explain(str(exc), image)) from None
    return state.final(), "\n".join(log_lines[-200:])
