"""``manage.py pull_image [IMAGE] [--tag T] [--host H] [--timeout S]``: pull an image on edge hosts.

The same operation as ``GET /api/v1/dockerpull`` (one per host: the named one, or every online
host), followed with a progress bar per host until every pull ends. ``IMAGE`` is ``repo[:tag]``
(a registry host may lead: ``127.0.0.1:5000/edgeproxy/camera:0.0.10``); by default the configured
camera image. Exits 0 when every pull succeeded, else 1 with the reason of each failure.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from edgeproxy.contracts.errors import DomainError
from edgeproxy.contracts.names import REPOSITORY_RULE, TAG_RULE, split_image
from processes import selectors, services
from processes.models import ACTIVE_STATES, OperationState
from settings_app.selectors import default_camera_image

BAR_WIDTH = 30


def _size(n: int | None) -> str:
    n = n or 0
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def render(host: str, state: str, progress: dict, width: int = BAR_WIDTH) -> str:
    percent = float(progress.get("percent") or 0.0)
    if state == OperationState.SUCCEEDED:
        percent = 100.0
    filled = int(round(width * min(max(percent, 0.0), 100.0) / 100))
    bar = "#" * filled + "-" * (width - filled)
    layers = f"{progress.get('layers_done', 0)}/{progress.get('layers_total', 0)} layers"
    sizes = f"{_size(progress.get('bytes_done'))}/{_size(progress.get('bytes_total'))}"
    return f"{host:<16} [{bar}] {percent:5.1f}%  {sizes}  {layers}  {state}"


class Command(BaseCommand):
    help = "Pull an image on edge hosts and follow the pull with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("image", nargs="?", help="repo[:tag]; default: the configured camera image")
        parser.add_argument("--tag", help="the tag (version) to pull, instead of :tag in IMAGE")
        parser.add_argument("--host", help="only this edge host (default: every online host)")
        parser.add_argument("--timeout", type=float, default=1800.0,
                            help="seconds to wait for the pulls (default 1800)")

    def handle(self, *args, image=None, tag=None, host=None, timeout=1800.0, **options):
        repository, image_tag = split_image(image or default_camera_image())
        tag = tag or image_tag
        if not repository or not REPOSITORY_RULE.fullmatch(repository):
            raise CommandError(f"{repository!r} is not an image repository (e.g. edgeproxy/camera).")
        if not tag or not TAG_RULE.fullmatch(tag):
            raise CommandError("Name the version to pull: IMAGE as repo:tag, or --tag.")
        try:
            operations = services.pull_image(repository, tag, host)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"pulling {repository}:{tag} on {', '.join(op.host.name for op in operations)}")
        tty = self.stdout.isatty()
        shown: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            current = [selectors.operation_by_id(op.id) for op in operations]
            lines = [render(op.host.name, op.state, op.progress or {}) for op in current]
            self._draw(lines, shown, tty)
            if all(op.state not in ACTIVE_STATES for op in current):
                break
            if time.monotonic() > deadline:
                raise CommandError(f"The pull of {repository}:{tag} did not end within {timeout:g} s; "
                                   "it goes on: see GET /api/v1/tasks/<id>.")
            time.sleep(0.2)
        failed = [op for op in current if op.state != OperationState.SUCCEEDED]
        if failed:
            raise CommandError("; ".join(f"{op.host.name}: {op.error or 'failed'}" for op in failed))
        self.stdout.write(self.style.SUCCESS(f"pulled {repository}:{tag} on {len(current)} host(s)"))

    def _draw(self, lines: list[str], shown: dict[str, str], tty: bool) -> None:
        """On a terminal the bars are redrawn in place; otherwise each changed bar is a new line."""
        if tty:
            if shown:
                self.stdout.write(f"\x1b[{len(lines)}F", ending="")
            for line in lines:
                self.stdout.write(f"\x1b[2K{line}")
            shown.update({str(i): line for i, line in enumerate(lines)})
            return
        for i, line in enumerate(lines):
            if shown.get(str(i)) != line:
                self.stdout.write(line)
                shown[str(i)] = line
        self.stdout.flush()
