"""The command-line programs: ``jaxad-run`` (``experiments/run.py``), ``jaxad-score``
(``experiments/score.py``) and ``jaxad-images-demo`` (``experiments/images_demo.py``). Each
module's ``main(argv)`` returns the exit status; the console scripts end with ``exit_with`` it."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C


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
