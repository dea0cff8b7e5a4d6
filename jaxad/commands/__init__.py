"""The command-line programs: ``jaxad-run`` (``experiments/run.py``), ``jaxad-score``
(``experiments/score.py``), ``jaxad-images-demo`` (``experiments/images_demo.py``) and
``jaxad-redraw`` (a benchmark's pictures from its saved runs). Each
module's ``main(argv)`` returns the exit status; the console scripts end with ``exit_with`` it."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C
# The operating system refused a file operation (no space left, a read-only file system, no
# permission): sysexits.h's EX_IOERR, apart from 2, a refusal of the command itself.
FILE_ERROR = 74


class _BackgroundWriteErrors(logging.Filter):
    """Log records of a checkpoint write that failed in the background: orbax's, each with its
    traceback, and asyncio's for the writes' failures nobody retrieved."""

    def filter(self, record: logging.LogRecord) -> bool:
        background = "orbax" in record.pathname or record.name == "asyncio"
        return not (record.levelno >= logging.ERROR and background)


def quiet_background_write_errors() -> None:
    """Leave out the log records and tracebacks of checkpoint writes that failed in the
    background (a full disk gives dozens): the failure reaches the command as an ``OSError``,
    which it reports in one line (``os_error_line``)."""
    for name in ("absl", "asyncio"):
        logging.getLogger(name).addFilter(_BackgroundWriteErrors())
    previous = sys.unraisablehook

    def unraisable(report: Any) -> None:
        # The writes still under way when one failed call back into the event loop orbax
        # closed on the failure; each callback's error is reported as unraisable.
        if not (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"):
            previous(report)

    sys.unraisablehook = unraisable


def os_error_line(err: OSError) -> str:
    """One line for an ``OSError`` the operating system raised: the path, what it said, and
    what to do (``/out/runs/.../checkpoints: No space left on device; free some space``)."""
    what = str(err) if err.filename is None else f"{err.filename}: {err.strerror}"
    advice = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
              errno.EROFS: "make it writable", errno.EACCES: "check its permissions",
              errno.EPERM: "check its permissions",
              errno.ENOTDIR: "a part of the path is a file"}.get(err.errno, "fix the cause")
    return f"{what}; {advice}"


def refuse_non_benchmarks(out_dirs: Sequence[Path]) -> bool:
    """Print one error line naming the directories among ``out_dirs`` that are not benchmark
    output directories (no ``benchmark.json``), for a command that reads several.

    Args:
        out_dirs: the directories the command was given.

    Returns:
        Whether any was refused (the command then exits with status 2, reading none).
    """
    missing = [str(d) for d in out_dirs if not (Path(d) / "benchmark.json").is_file()]
    if missing:
        print(f"error: not a benchmark output directory (no benchmark.json): {', '.join(missing)}", file=sys.stderr)
    return bool(missing)


def exit_with(status: int) -> NoReturn:
    """End the process with ``status``; after an interrupt, without the interpreter's teardown.

    An interrupt (SIGTERM, Ctrl-C) that lands while XLA compiles leaves jaxlib state whose
    destruction at exit segfaults (jax 0.10.2, CPU: status 139 after the runner's clean
    "continue with --resume" lines; docs/errors.md, The runner). A program
    returns ``INTERRUPTED`` only once nothing is left to do (its files written atomically, the
    runner's checkpoint managers closed), so the process ends at once, with the status that
    says it was interrupted."""
    if status == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
