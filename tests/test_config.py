import dataclasses
from typing import Literal

import pytest

from repro.config import TrainingConfig, config_from_dict, config_to_dict, parse_set_arguments, resolve_config
from repro.errors import UserError


@dataclasses.dataclass
class ExampleConfig(TrainingConfig):
    hidden_size: int = 8
    rate: float = 0.1
    mode: Literal["classes", "full"] = "classes"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    name: str = "x"


PRESETS = {"paper": {}, "smoke": {"hidden_size": 2}}


def test_types_are_coerced_and_checked():
    values = parse_set_arguments(ExampleConfig, ["hidden_size=16", "rate=1e-3", "mode=full", "flag=yes",
                                                 "sizes=3,4,5", "gradient_clip_val=none", "name=a=b"])
    assert values == {"hidden_size": 16, "rate": 1e-3, "mode": "full", "flag": True, "sizes": (3, 4, 5),
                      "gradient_clip_val": None, "name": "a=b"}


@pytest.mark.parametrize("assignment, message", [
    ("hidden_size=big", "hidden_size=big: expected int"),
    ("mode=half", "must be one of classes, full"),
    ("flag=maybe", "expected a boolean"),
    ("hiden_size=3", "unknown config key; valid keys:"),
    ("hidden_size", "expected key=value"),
])
def test_bad_overrides_name_the_key(assignment, message):
    with pytest.raises(UserError, match=message):
        parse_set_arguments(ExampleConfig, [assignment])


def test_precedence_defaults_preset_set_flags():
    config = resolve_config(ExampleConfig, PRESETS, "smoke", ["rate=0.5"], seed=7, max_epochs=None)
    assert (config.hidden_size, config.rate, config.seed, config.max_epochs) == (2, 0.5, 7, 20)
    with pytest.raises(UserError, match="unknown preset 'fast'; valid presets: paper, smoke"):
        resolve_config(ExampleConfig, PRESETS, "fast")


def test_round_trip_through_a_checkpoint_dict():
    config = resolve_config(ExampleConfig, PRESETS, "paper", ["sizes=7,8"])
    assert config_from_dict(ExampleConfig, config_to_dict(config) | {"sizes": [7, 8]}) == config
