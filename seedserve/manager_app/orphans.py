"""What a killed manager leaves behind, collected when a manager starts:
upload directories of managers no longer running, and artifacts that no
version refers to."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from seedserve.errors import Unavailable
from seedserve.registry import ModelStore

__all__ = ["UPLOAD_PREFIX", "collect_orphans", "upload_dir"]

logger = logging.getLogger("seedserve.manager")

#: An upload's directory is ``<data dir>/uploads/seedserve-upload-<manager pid>-<random>``.
UPLOAD_PREFIX = "seedserve-upload-"


def upload_dir(data_dir: Path) -> Path:
    path = data_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_uploads(directory: Path) -> int:
    """Remove the upload directories of managers that are not running."""
    removed = 0
    for path in directory.glob(UPLOAD_PREFIX + "*"):
        pid = path.name.removeprefix(UPLOAD_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _running(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


async def collect_orphans(store: ModelStore, data_dir: Path, older_than_s: float) -> None:
    """Run when a manager starts (``older_than_s``: the ``orphan_age_s`` setting)."""
    uploads = sweep_uploads(upload_dir(data_dir))
    try:
        artifacts = await store.collect_orphan_artifacts(older_than_s)
    except Unavailable:
        logger.warning("the database is unreachable at start-up; orphan artifacts are collected at the next start")
        artifacts = 0
    if uploads or artifacts:
        logger.info("collected %d unfinished upload(s) and %d orphan artifact(s)", uploads, artifacts)
