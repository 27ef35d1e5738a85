"""The trainer factory: every run's Lightning Trainer is built here, from flags and the paper's config.

Nothing is hard-coded to a device: accelerator, devices, nodes, strategy and precision come from the
command line, so the same command runs on a laptop, a multi-GPU node or a SLURM cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from repro.errors import UserError


@dataclass
class TrainerOptions:
    accelerator: str = "auto"
    devices: str = "auto"  # a count, "auto", or a list such as "0,1"
    nodes: int = 1
    precision: str = "32-true"
    strategy: str = "auto"
    deterministic: bool = False
    wandb: bool = False
    progress_bar: bool = True


class StopOnNonFiniteLoss(Callback):
    """A NaN or infinite loss ends the run with a clear message; the last good checkpoint stays."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise UserError(f"non-finite training loss ({float(loss)}) at epoch {trainer.current_epoch}, step "
                            f"{trainer.global_step}; last good checkpoint: {self.checkpoint_dir / 'last.ckpt'} "
                            f"(try a lower --set learning_rate or a gradient_clip_val)")


def _devices(value: str):
    return int(value) if value.isdigit() else value


def build_trainer(options: TrainerOptions, config, run_dir: Path, run_name: str, monitor: tuple[str, str],
                  use_distributed_sampler: bool = True) -> L.Trainer:
    # run_dir/logs/version_N/metrics.csv, always; a resumed run adds a version instead of overwriting
    loggers = [CSVLogger(save_dir=run_dir, name="logs")]
    if options.wandb:
        from lightning.pytorch.loggers import WandbLogger

        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("--wandb: the wandb package is not installed; pip install -e '.[wandb]'") from None

        # Without a key W&B runs offline (sync later with `wandb sync`); the id is the run's name, so a
        # resumed or requeued run continues the same W&B run.
        offline = not os.environ.get("WANDB_API_KEY")
        loggers.append(WandbLogger(project="repro", name=run_name, id=run_name, save_dir=str(run_dir),
                                   offline=offline, resume="allow"))
    metric, mode = monitor
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=metric, mode=mode,
                                  save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks = [checkpoints, StopOnNonFiniteLoss(run_dir / "checkpoints")]
    if options.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    return L.Trainer(
        accelerator=options.accelerator,
        devices=_devices(str(options.devices)),
        num_nodes=options.nodes,
        strategy=options.strategy,
        precision=options.precision,
        deterministic=options.deterministic,
        max_epochs=config.max_epochs,
        max_time={"minutes": config.max_time_minutes} if config.max_time_minutes else None,
        gradient_clip_val=config.gradient_clip_val,
        gradient_clip_algorithm=config.gradient_clip_algorithm if config.gradient_clip_val else None,
        accumulate_grad_batches=config.accumulate_grad_batches,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=run_dir,
        enable_progress_bar=options.progress_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=20,
        use_distributed_sampler=use_distributed_sampler,
    )
