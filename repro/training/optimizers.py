"""The optimiser most papers name in their config: Adam or plain SGD, built once from the config's fields.

A paper's config says ``optimizer`` ("adam" or "sgd") and ``learning_rate``, and may say ``momentum``
(SGD only) and ``weight_decay`` (an L2 gradient term, not AdamW's decoupled decay); a field a config
does not have is 0. What is the paper's own stays in the paper: its parameter groups (passed here as
``parameters``), a learning-rate schedule, an optimiser no other paper uses (Xu et al.'s RMSProp).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

OPTIMIZERS = ("adam", "sgd")


def optimizer_from_config(parameters: Iterable[Any], config: Any) -> torch.optim.Optimizer:
    """Adam or SGD over ``parameters`` (tensors, or groups that may carry their own ``lr``) at the
    config's ``learning_rate``, with its ``weight_decay`` and (SGD) ``momentum`` when it has them."""
    weight_decay = getattr(config, "weight_decay", 0.0)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=getattr(config, "momentum", 0.0),
                               weight_decay=weight_decay)
    raise ValueError(f"optimizer={config.optimizer!r}: optimizer_from_config builds {' or '.join(OPTIMIZERS)}")
