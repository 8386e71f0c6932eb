"""Image pulls through the Docker SDK's pull stream, with progress (bytes and layers done)."""

from __future__ import annotations

import json

import docker.errors

from worker.runtimes.base import RuntimeError_

_DONE = ("Pull complete", "Already exists")


class PullProgress:
    """Folds Docker's per-layer status lines into one progress dict."""

    def __init__(self, image: str):
        self.image = image
        self.layers: dict[str, dict] = {}
        self.status = "pulling"

    def feed(self, event: dict) -> None:
        layer = event.get("id")
        status = event.get("status", "")
        if not layer or layer == self.image.split(":")[-1] or " " in layer:
            if status.startswith("Status:") or status.startswith("Digest:"):
                self.status = status
            return
        entry = self.layers.setdefault(layer, {"current": 0, "total": 0, "done": False})
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            entry["total"] = detail["total"]
            entry["current"] = max(entry["current"], detail.get("current", 0))
        elif status in ("Download complete", "Verifying Checksum"):
            entry["current"] = entry["total"] or entry["current"]
        elif status in _DONE:
            entry["done"] = True
            entry["current"] = entry["total"] or entry["current"]

    def as_dict(self) -> dict:
        total = sum(layer["total"] for layer in self.layers.values())
        done = sum(layer["current"] for layer in self.layers.values())
        return {
            "image": self.image,
            "status": self.status,
            "layers_total": len(self.layers),
            "layers_done": sum(1 for layer in self.layers.values() if layer["done"]),
            "bytes_total": total,
            "bytes_done": min(done, total) if total else done,
            "percent": round(100.0 * done / total, 1) if total else (100.0 if self.status.startswith("Status:") else 0.0),
        }


def explain(error_text: str, image: str) -> str:
    """A clear sentence for a failed pull, without the daemon's whole dump."""
    text = error_text.lower()
    if any(s in text for s in ("not found", "manifest unknown", "pull access denied", "does not exist", "unauthorized")):
        return f"image {image} does not exist on its registry (or needs credentials)"
    if any(s in text for s in ("dial tcp", "no such host", "connection refused", "timeout", "i/o timeout",
                               "network is unreachable", "server misbehaving", "tls", "eof")):
        return f"the registry of {image} cannot be reached"
    return f"image {image} could not be pulled"


def pull(client: docker.DockerClient, repository: str, tag: str, progress) -> tuple[dict, str]:
    image = f"{repository}:{tag}"
    state = PullProgress(image)
    log_lines = []
    try:
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError_(explain(event.get("error", ""), image))
            log_lines.append(json.dumps(event))
            state.feed(event)
            progress(state.as_dict())
    except docker.errors.DockerException as exc:
        raise RuntimeError_(explain(str(exc), image)) from None
    final = state.as_dict()
    final["percent"] = 100.0
    final["bytes_done"] = final["bytes_total"]
    final["layers_done"] = final["layers_total"]
    return final, "\n".join(log_lines[-200:])
