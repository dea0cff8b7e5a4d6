"""AGAD on a folder of images, offline, in one command: ``jaxad-images-demo``, as a script.

    python experiments/images_demo.py            # writes runs/images_demo/{data,run,scored}

The program lives in ``jaxad/commands/images_demo.py``; ``--help`` lists every option.
"""

from __future__ import annotations

from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands import exit_with
from jaxad.commands.images_demo import main

if __name__ == "__main__":
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main())
