"""The baseline side of a benchmark: the repository at another commit, run alongside this tree."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def baseline_tree(ref: str, work: Path) -> tuple[Path, str]:
    """The repository at ``ref`` (``git archive``) in ``work/baseline``, and its short commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
    tree = work / "baseline"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree)  # noqa: S202 - our own repository's archive
    return tree, commit
