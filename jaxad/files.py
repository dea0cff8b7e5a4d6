"""Atomic file writes: a kill mid-write never leaves a half-written file that reads as complete."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The temporary file's name is unique to this write, so two writers of one path never write
    into each other's file: the last rename wins, whole. A write that fails (a full disk, a
    read-only directory) removes its temporary file and raises the ``OSError``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": created here, with the umask's permissions
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # never created, on a read-only disk
            tmp.unlink()
        if isinstance(err, OSError) and err.errno is not None:  # named by the file meant, not the temporary one
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """``write_bytes_atomic`` of ``text`` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """``json.dump`` through ``write_text_atomic``."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 100) -> None:
    """``fig.savefig`` (in the format ``path``'s suffix names) through ``write_bytes_atomic``: a
    picture that exists is whole (``--resume`` redraws a finished run's missing pictures)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip("."), dpi=dpi)
    write_bytes_atomic(path, buffer.getvalue())


def read_json(path: str | Path, holds: type | None = None) -> Any:
    """``json.load`` of ``path``; a damaged file raises ``ValueError`` naming it.

    Args:
        path: a JSON file jaxad wrote.
        holds: the type the file holds (``dict`` for an object, ``list`` for an array), if known:
            a file that parses but holds another is damaged too.

    Returns:
        The parsed JSON.

    Raises:
        ValueError: the file is not valid JSON (cut short, overwritten, not text), or does
            not hold ``holds``; the message names it and says what to do.
    """
    advice = "restore it from a copy, or delete it to have jaxad write it afresh"
    with open(path, "rb") as f:
        try:
            value = json.loads(f.read().decode("utf-8"))
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is damaged, not valid JSON ({err}); {advice}") from err
    if holds is not None and not isinstance(value, holds):
        raise ValueError(f"{path} is damaged: it holds a JSON {type(value).__name__} where jaxad writes a JSON "
                         f"{holds.__name__}; {advice}")
    return value
