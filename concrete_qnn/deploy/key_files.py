"""The HTTP server's keys directory: checked at start-up, and uploads' temporary files.

An upload is written to a ``.upload-*`` file that its server holds locked (``flock``) until
it is renamed to ``<key id>.bin`` or removed. A server killed during an upload leaves its
file behind, unlocked: the next start removes it, while the files of uploads still running
in another server sharing the directory stay locked and are kept.
"""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

UPLOAD_PREFIX = ".upload-"


def check_keys_dir(keys_dir: Path) -> None:
    """Create ``keys_dir`` if missing and check that a file can be written there.

    Raises
    ------
    ValueError
        If it is a file, cannot be created or is not writable (a read-only file system, no
        permission); the message names the directory and the cause.
    """
    if keys_dir.exists() and not keys_dir.is_dir():
        raise ValueError(f"the keys directory {keys_dir} is a file, not a directory")
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=keys_dir):
            pass
    except OSError as error:
        raise ValueError(
            f"the keys directory {keys_dir} cannot be created or written to: "
            f"{error.strerror or error}"
        ) from None


def new_upload(keys_dir: Path) -> tuple[int, str]:
    """A new temporary file for an upload, locked: its descriptor and path."""
    descriptor, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=keys_dir)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor, path


def remove_stale_uploads(keys_dir: Path) -> int:
    """Remove the upload files no running server holds locked; how many were removed."""
    removed = 0
    for path in keys_dir.glob(f"{UPLOAD_PREFIX}*"):
        try:
            with open(path, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()
        except BlockingIOError:
            continue  # an upload running in another server
        except FileNotFoundError:
            continue  # its upload ended meanwhile
        removed += 1
    return removed
