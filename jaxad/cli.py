"""Command-line flags generated from the config dataclasses: defaults and help live in the fields.

    parser = argparse.ArgumentParser()
    add_config_flags(parser, CONFIG_SECTIONS, skip={"dataset", "normal_class", "gamma", "seed"})
    args = parser.parse_args()
    cfg = ExperimentConfig().replace(**config_changes(args, CONFIG_SECTIONS))

Each field becomes ``--field-name`` (or ``--<flag>`` when its metadata names a shorter,
established spelling, e.g. ``--lr``), with the field's ``metadata["help"]`` and its default.
A ``Literal`` type gives the flag's choices, a bool ``--x`` / ``--no-x``, a tuple
``nargs="+"``, and a number that may be None (``float | None``) also takes the word ``none``
(``--g-grad-clip-factor none``: the field set to None, a clip turned off). A field name found
in several sections (``image_size``) is one flag that sets them all. Flags default to None, so
only what the command line gives changes the config: the defaults stay those of the
dataclasses, read when the parser is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jaxad.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig

# Section name -> config class; "" is ExperimentConfig's own fields (seed, paper_protocol).
CONFIG_SECTIONS: dict[str, type] = {"model": ModelConfig, "loss": LossConfig, "train": TrainConfig,
                                    "data": DataConfig, "": ExperimentConfig}
SECTION_TYPES = (ModelConfig, LossConfig, TrainConfig, DataConfig)


def flag_name(field: dataclasses.Field) -> str:
    """``--batch-size`` for ``batch_size``; ``--lr`` where the field's metadata says ``flag="lr"``."""
    return "--" + field.metadata.get("flag", field.name).replace("_", "-")


class _NoneGiven:
    """What ``--field none`` parses to: the field set to None, told apart from a flag left out
    (argparse's None)."""

    def __repr__(self) -> str:
        return "none"


NONE_GIVEN = _NoneGiven()


def _number_or_none(tp: type) -> Any:
    """An argparse ``type`` reading ``tp`` or the word ``none``."""
    def parse(text: str) -> Any:
        return NONE_GIVEN if text.strip().lower() == "none" else tp(text)
    parse.__name__ = tp.__name__  # argparse names the type in its error message
    return parse


def _unwrap_optional(tp: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``); ``tp`` otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _optional_number(tp: Any) -> bool:
    """Whether ``tp`` is ``int | None`` or ``float | None``: its flag also takes ``none``."""
    inner = _unwrap_optional(tp)
    return inner is not tp and inner in (int, float)


def _field_named(cls: type, name: str) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def _flag_kwargs(field: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """argparse keywords for one field of type ``tp``: its type, choices, nargs, action and help."""
    or_none, tp = _optional_number(tp), _unwrap_optional(tp)
    default = field.default
    shown = "" if default is dataclasses.MISSING or default is None else f" (default: {default})"
    if or_none:
        shown = " (default: none, off)" if default is None else f" (default: {default}; none: off)"
    kwargs: dict[str, Any] = {"default": None, "help": (field.metadata.get("help", "") + shown).replace("%", "%%")}
    origin = typing.get_origin(tp)
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is typing.Literal:
        choices = typing.get_args(tp)
        kwargs.update(type=type(choices[0]), choices=choices)
    elif origin is tuple:
        kwargs.update(type=typing.get_args(tp)[0], nargs="+")
    elif tp in (int, float, str):
        kwargs["type"] = _number_or_none(tp) if or_none else tp
    else:
        raise TypeError(f"no command-line form for field {field.name!r} of type {tp!r}")
    return kwargs


def config_flags(sections: Mapping[str, type], skip: Collection[str] = ()) -> dict[str, list[str]]:
    """Field name -> the sections holding it, for every field of ``sections`` not in ``skip``;
    fields that hold sub-configs (ExperimentConfig's ``model``, ...) are left out."""
    targets: dict[str, list[str]] = {}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in skip or hints[field.name] in SECTION_TYPES:
                continue
            targets.setdefault(field.name, []).append(section)
    return targets


def add_config_flags(parser: argparse.ArgumentParser, sections: Mapping[str, type] = CONFIG_SECTIONS,
                     skip: Collection[str] = (), choices: Mapping[str, Sequence[str]] | None = None) -> None:
    """Add a flag per field of the config classes in ``sections`` (see the module docstring).

    ``choices``: field name -> allowed values, for fields whose values live in a registry
    rather than a ``Literal`` (``backbone``: ``jaxad.models.BACKBONES``).
    """
    choices = choices or {}
    groups: dict[str, Any] = {}
    for name, owners in config_flags(sections, skip).items():
        cls = sections[owners[0]]
        field = _field_named(cls, name)
        kwargs = _flag_kwargs(field, typing.get_type_hints(cls)[name])
        if name in choices:
            kwargs["choices"] = tuple(choices[name])
        if len(owners) > 1:
            kwargs["help"] += f"; sets {' and '.join(f'{o}.{name}' for o in owners)}"
        if cls not in groups:  # --help lists the flags under the class they configure
            groups[cls] = parser.add_argument_group(f"{cls.__name__} (jaxad/config.py)")
        groups[cls].add_argument(flag_name(field), dest=name, **kwargs)


def config_changes(args: argparse.Namespace, sections: Mapping[str, type] = CONFIG_SECTIONS,
                   skip: Collection[str] = ()) -> dict[str, Any]:
    """The flags given on the command line as ``ExperimentConfig.replace`` keywords
    (``{"train.epochs": 3, "model.image_size": 64, "data.image_size": 64}``); flags left out
    are absent, so the dataclass defaults hold."""
    changes: dict[str, Any] = {}
    for name, owners in config_flags(sections, skip).items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if value is NONE_GIVEN:
            value = None
        elif isinstance(value, list):
            value = tuple(value)
        for section in owners:
            changes[f"{section}.{name}" if section else name] = value
    return changes


def flag_words(dotted: str, value: Any, sections: Mapping[str, type] = CONFIG_SECTIONS) -> list[str] | None:
    """The command-line words that set config field ``dotted`` (``"train.epochs"``, as
    ``config_changes`` names it) to ``value``, as read back from a config.json: the inverse of
    ``config_changes``. None where no flag can say it (a section or field unknown here, or None
    for a field that is not an optional number)."""
    section, _, name = dotted.rpartition(".")
    cls = sections.get(section)
    field = _field_named(cls, name) if cls is not None else None
    if field is None:
        return None
    flag = flag_name(field)
    if value is None:
        return [flag, "none"] if _optional_number(typing.get_type_hints(cls)[name]) else None
    if isinstance(value, bool):
        return [flag if value else f"--no-{flag[2:]}"]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]
