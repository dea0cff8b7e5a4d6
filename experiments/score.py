"""Score new images with a trained run: ``jaxad-score``, as a script.

    python experiments/score.py --run runs/mnist_naive/runs/gamma0/class3/seed0 \
        --images my_images/ --out scored/

The program lives in ``jaxad/commands/score.py``; ``--help`` lists every option.
"""

from __future__ import annotations

from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands import exit_with
from jaxad.commands.score import main, read_inputs  # noqa: F401 (API)

if __name__ == "__main__":
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main())
