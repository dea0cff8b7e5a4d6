"""One writer per directory: a run directory (``fit``) or a benchmark's output directory (the
runner) is written by one process at a time.

    with locked(run_dir, f"another process is training the run in {run_dir}; ..."):
        ...  # write into run_dir

The lock is a ``flock`` on ``DIR/.lock``, a file kept for the purpose: the kernel releases it
when its process ends, even on ``kill -9``, so a lock file left behind never blocks a later
writer. (A lock file, not the directory itself: ``flock`` on a directory fails over NFS.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".lock"


class DirectoryLockedError(RuntimeError):
    """A directory another writer holds the lock of: another process (or ``fit`` call) writes there."""


def _missing_ancestors(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_unused(made: list[Path]) -> None:
    """Remove the directories the lock made (deepest first) when the lock file is all they hold:
    a refusal leaves nothing behind. Called while the lock is held."""
    if not made or {p.name for p in made[0].iterdir()} != {LOCK_FILE}:
        return
    with contextlib.suppress(OSError):
        (made[0] / LOCK_FILE).unlink()
        for path in made:
            path.rmdir()


def _acquire(lock_path: Path, refusal: str):
    """The open lock file, locked; ``DirectoryLockedError(refusal)`` if another writer holds it."""
    while True:
        lock_file = open(lock_path, "a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise DirectoryLockedError(refusal) from None
        # A writer that made the directory removes it when it wrote nothing: a lock taken on
        # the file it removed would guard nothing, so take the lock of the file there now.
        try:
            if os.stat(lock_path).st_ino == os.fstat(lock_file.fileno()).st_ino:
                return lock_file
        except FileNotFoundError:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_file.close()


@contextlib.contextmanager
def locked(directory: str | Path, refusal: str) -> Iterator[None]:
    """Hold ``directory``'s lock for the block, or raise ``DirectoryLockedError(refusal)``.

    ``directory`` is made if it does not exist; if the block leaves it holding nothing (it was
    refused, or failed before writing), it is removed again, with the parents made for it.

    Args:
        directory: the directory to write in.
        refusal: the message when another writer holds the lock (say who, and what to do).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file, not a directory; give a directory to write in")
    made = _missing_ancestors(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        lock_file = _acquire(directory / LOCK_FILE, refusal)
    except OSError as err:
        if err.errno != errno.EROFS:
            raise
        yield  # a read-only file system has no writer to keep out (reading a finished benchmark)
        return
    try:
        yield
    finally:
        _remove_if_unused(made)
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def is_locked(directory: str | Path) -> bool:
    """Whether a writer holds ``directory``'s lock now (False where no writer ever took it)."""
    try:
        lock_file = open(Path(directory) / LOCK_FILE)
    except OSError:
        return False
    with lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        return False
