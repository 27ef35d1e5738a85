"""Typed configs: a paper's dataclass defaults are the paper's values, presets are named variants,
and ``--set key=value`` overrides are checked against the field's type.

One config system only: dataclasses. The resolved config is saved with every run, in its checkpoint
and in its run record.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from repro.errors import UserError


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts; ``Annotated[int, Range(1)]`` reads "an int of at least 1"."""

    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True

    def check(self, value) -> str | None:
        """None if ``value`` is in range, else what it must be."""
        if value is None:
            return None
        if not math.isfinite(value):
            return "must be a finite number"
        if value < self.low or (value == self.low and not self.low_inclusive):
            return f"must be {'at least' if self.low_inclusive else 'greater than'} {self.low:g}"
        if value > self.high or (value == self.high and not self.high_inclusive):
            return f"must be {'at most' if self.high_inclusive else 'less than'} {self.high:g}"
        return None


# Field types of configs: sizes and counts, rates, probabilities. A value outside the range is a
# one-line error naming the option it came from, before anything is built.
PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, low_inclusive=False)]
NonNegativeFloat = Annotated[float, Range(0)]
Probability = Annotated[float, Range(0, 1, high_inclusive=False)]  # dropout: 1 would drop everything


@dataclasses.dataclass
class TrainingConfig:
    """Fields every paper's config has; papers subclass this and add their own."""

    seed: NonNegativeInt = 1234
    max_epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    gradient_clip_val: PositiveFloat | None = None  # clip the global gradient norm at this value
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: PositiveInt = 1
    max_time_minutes: PositiveFloat | None = None  # stop training after this wall-clock time (then test as usual)

    # The world-size rule (repro/training/batch_scaling.py; class attributes, not fields): each paper states what stays
    # fixed when devices or nodes change. The default is Lightning's: batch_size per process.
    batch_size_scope = "per-process"
    world_size_rule = "not stated"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(text: str, annotation: Any, key: str) -> Any:
    """Turn the text of ``--set key=text`` into a value of the field's type, or say why not."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # the range is checked on the resolved config (check_ranges)
        return _coerce(text, typing.get_args(annotation)[0], key)
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
    return typing.get_type_hints(config_class, include_extras=True)


def field_range(annotation: Any) -> Range | None:
    """The Range of an ``Annotated[..., Range(...)]`` field type (also inside ``X | None``)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        ranges = [field_range(option) for option in typing.get_args(annotation)]
        return next((r for r in ranges if r is not None), None)
    if typing.get_origin(annotation) is Annotated:
        return next((meta for meta in typing.get_args(annotation)[1:] if isinstance(meta, Range)), None)
    return None


def check_ranges(config: Any, origins: dict[str, str]) -> None:
    """Every field with a Range holds a value inside it; ``origins`` says where each key was set."""
    for name, annotation in field_types(type(config)).items():
        allowed = field_range(annotation)
        value = getattr(config, name, None)
        problem = allowed.check(value) if allowed is not None and isinstance(value, (int, float)) else None
        if problem:
            where = origins.get(name, f"the default of {type(config).__name__}")
            raise UserError(f"{where}: {name}={value} {problem}")


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
    assigned = parse_set_arguments(config_class, list(assignments))
    config = apply_overrides(config, assigned, origin="--set")
    flags = {key: value for key, value in flag_overrides.items() if value is not None}
    config = apply_overrides(config, flags, origin="flags")
    origins = {key: f"preset {preset!r}" for key in presets[preset]}
    origins.update({key: f"--set {key}" for key in assigned})
    origins.update({key: f"--{key.replace('_', '-')}" for key in flags})
    check_ranges(config, origins)
    return config


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
