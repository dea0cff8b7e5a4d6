"""Run the paper's one-class benchmark from one command: ``jaxad-run``, as a script.

    python experiments/run.py                                   # a few-minute demo on sklearn's digits
    python experiments/run.py --dataset mnist --backbone naive --data-dir DIR   # DIR: the raw MNIST IDX files
    python experiments/run.py --dataset cifar10 --backbone unetpp --gammas 0 0.01 0.05 --resume

The program lives in ``jaxad/commands/run.py``; ``--help`` lists every option.
"""

from __future__ import annotations

from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands.run import (build_spec, exit_with, main, output_dir, parse_args,  # noqa: F401 (API)
                                 requested_backbone, resume_command, without_merge_flags)

if __name__ == "__main__":
    restart_with_fast_malloc(requested_backbone())  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main())
