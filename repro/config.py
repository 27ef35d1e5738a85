"""Typed configs: a paper's dataclass defaults are the paper's values, presets are named variants,
and ``--set key=value`` overrides are checked against the field's type.

One config system only: dataclasses. The resolved config is saved with every run, in its checkpoint
and in its run record.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from repro.errors import UserError


@dataclasses.dataclass
class TrainingConfig:
    """Fields every paper's config has; papers subclass this and add their own."""

    seed: int = 1234
    max_epochs: int = 20
    batch_size: int = 32
    gradient_clip_val: float | None = None  # clip the global gradient norm at this value
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = 1
    max_time_minutes: float | None = None  # stop training after this wall-clock time (then test as usual)

    # The world-size rule (repro/scaling.py; class attributes, not fields): each paper states what stays
    # fixed when devices or nodes change. The default is Lightning's: batch_size per process.
    batch_size_scope = "per-process"
    world_size_rule = "not stated"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(text: str, annotation: Any, key: str) -> Any:
    """Turn the text of ``--set key=text`` into a value of the field's type, or say why not."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and text.lower() in {"none", "null"}:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(text, option, key)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if len(errors) == 1 else f"--set {key}={text}: not a valid {annotation}")
    if origin is Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise UserError(f"--set {key}={text}: must be one of {', '.join(map(str, choices))}")
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(_coerce(part.strip(), item_type, key) for part in text.split(",") if part.strip())
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UserError(f"--set {key}={text}: expected a boolean (true/false)")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise UserError(f"--set {key}={text}: expected {annotation.__name__}") from None
    if annotation is str:
        return text
    raise UserError(f"--set {key}: fields of type {annotation} cannot be set from the command line")


def field_types(config_class: type) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


def apply_overrides(config: Any, overrides: dict[str, Any], origin: str) -> Any:
    """Return a copy of ``config`` with typed values replaced; ``origin`` names where they came from."""
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise UserError(f"{origin}: unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}")
    return dataclasses.replace(config, **overrides)


def parse_set_arguments(config_class: type, assignments: list[str]) -> dict[str, Any]:
    """Parse ``["hidden_size=200", "lr=0.1"]`` against the config's field types."""
    types_by_name = field_types(config_class)
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {assignment!r}: expected key=value")
        if key not in types_by_name:
            raise UserError(f"--set {key}: unknown config key; valid keys: {', '.join(sorted(types_by_name))}")
        parsed[key] = _coerce(text.strip(), types_by_name[key], key)
    return parsed


def resolve_config(config_class: type, presets: dict[str, dict[str, Any]], preset: str,
                   assignments: list[str] = (), **flag_overrides: Any) -> Any:
    """Defaults (the paper) <- preset <- ``--set`` assignments <- explicit flags such as ``--seed``."""
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r}; valid presets: {', '.join(presets)}")
    config = apply_overrides(config_class(), presets[preset], origin=f"preset {preset!r}")
    config = apply_overrides(config, parse_set_arguments(config_class, list(assignments)), origin="--set")
    flags = {key: value for key, value in flag_overrides.items() if value is not None}
    return apply_overrides(config, flags, origin="flags")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(config_class: type, values: dict[str, Any]) -> Any:
    """Rebuild a config saved in a checkpoint; tuples come back from JSON as lists."""
    types_by_name = field_types(config_class)
    known = {}
    for key, value in values.items():
        if key not in types_by_name:
            raise UserError(f"saved config has key {key!r} that {config_class.__name__} does not know")
        if isinstance(value, list):
            value = tuple(value)
        known[key] = value
    return config_class(**known)
