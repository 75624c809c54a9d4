"""What a killed manager or database leaves behind, collected when a manager
starts and then every ``orphan_age_s`` (at least a minute): upload
directories of managers no longer running, version documents of
registrations cut off before their model counted them, and artifacts that no
version refers to."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from seedserve.errors import Unavailable
from seedserve.registry import ModelStore

__all__ = ["UPLOAD_PREFIX", "collect_orphans", "collect_forever", "upload_dir"]

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
        versions = await store.collect_stray_versions(older_than_s)
        artifacts = await store.collect_orphan_artifacts(older_than_s)
    except Unavailable:
        logger.warning("the database is unreachable; orphan artifacts are collected next time")
        versions = artifacts = 0
    if uploads or versions or artifacts:
        logger.info("collected %d unfinished upload(s), %d stray version(s) and %d orphan artifact(s)",
                    uploads, versions, artifacts)


async def collect_forever(store: ModelStore, data_dir: Path, older_than_s: float) -> None:
    """:func:`collect_orphans` every ``older_than_s`` (at least a minute), for
    what a database outage leaves while the manager runs on."""
    while True:
        await asyncio.sleep(max(60.0, older_than_s))
        try:
            await collect_orphans(store, data_dir, older_than_s)
        except Exception:
            logger.warning("collecting orphans failed; trying again later", exc_info=True)
