"""Each epoch's figures as TensorBoard scalars, through tensorboardX (``pip install 'jaxad[tensorboard]'``).

    writer = EpochWriter("runs/tb/digits-0")
    fit(cfg, run_dir="runs/digits-0", on_epoch=writer)   # fit's per-epoch callback
    writer.close()
    # tensorboard --logdir runs/tb

Every number of an epoch's history record is written at step = the epoch (counting from 1):
``auroc``, the losses, the training evidence, ``seconds``. The benchmark runner writes one
log directory per run with ``--tensorboard``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def check_installed() -> None:
    """Raise an ImportError saying how to install tensorboardX, unless it is installed."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError as err:
        raise ImportError("TensorBoard logging needs tensorboardX: pip install 'jaxad[tensorboard]' "
                          "(or pip install tensorboardX)") from err


def summary_writer(log_dir: str | Path) -> Any:
    """A ``tensorboardX.SummaryWriter`` on ``log_dir`` (``check_installed`` first)."""
    check_installed()
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(log_dir))


class EpochWriter:
    """An ``on_epoch(epoch, record)`` callback for ``fit`` that writes the record's numbers as
    scalars at step ``epoch`` into ``log_dir``, flushed after each epoch."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = summary_writer(self.log_dir)

    def __call__(self, epoch: int, record: dict[str, Any]) -> None:
        for name, value in record.items():
            # Numbers only: not the record's epoch itself, the scoring generator's name, or an
            # AUROC the test split cannot define (None).
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(name, value, global_step=epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
