"""Atomic file writes: a kill mid-write never leaves a half-written file that reads as complete."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """``json.dump`` through ``write_text_atomic``."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 100) -> None:
    """``fig.savefig`` to a temporary file beside ``path``, then rename it over ``path``: a
    picture that exists is whole (``--resume`` redraws a finished run's missing pictures)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # savefig takes the format from the suffix
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    """``json.load`` of ``path``; a damaged file raises ``ValueError`` naming it."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is damaged, not valid JSON ({err}); restore it from a copy, "
                             f"or delete it to have jaxad write it afresh") from err
