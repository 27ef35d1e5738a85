"""The trainer factory: every run's Lightning Trainer is built here, from flags and the paper's config.

Nothing is hard-coded to a device: accelerator, devices, nodes, strategy and precision come from the
command line, so the same command runs on a laptop, a multi-GPU node or a SLURM cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException

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
    compile: bool = False  # torch.compile the module's network (applied in repro/app/run.py)
    # last.ckpt is also written every N training steps, or else every M minutes, so a crash or a
    # preemption mid-epoch loses at most that much (besides the end-of-epoch checkpoints)
    checkpoint_every_n_steps: int | None = None
    checkpoint_every_minutes: float = 30.0

    def record(self) -> dict:
        """The run record's "trainer" section (with repro.training.batch_scaling's world-size account added by run.py)."""
        return {"accelerator": self.accelerator, "devices": str(self.devices), "nodes": self.nodes,
                "strategy": self.strategy, "precision": self.precision, "deterministic": self.deterministic,
                "compile": self.compile, "checkpoint_every_n_steps": self.checkpoint_every_n_steps,
                "checkpoint_every_minutes": None if self.checkpoint_every_n_steps else self.checkpoint_every_minutes}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint beside its final name, then rename it in: a kill mid-write (SIGKILL, node
    failure, full disk) leaves the previous last.ckpt whole. Lightning's own writer stages the file in
    the system temp folder, which is often another file system, where the final move is a copy."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(checkpoint, staging)
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)


class MidEpochCheckpoint(ModelCheckpoint):
    """last.ckpt every N steps or M minutes, but never at an epoch's last batch: the end-of-epoch
    checkpoint follows right after validation, and Lightning resumed from a checkpoint taken just before
    validation skips that epoch's validation (its history entry and the paper's schedule would be lost)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class RandomStateInCheckpoint(Callback):
    """Lightning restores weights, optimizer and loop state; this adds the random generators (torch,
    CUDA, numpy, Python; those of the saving process), so dropout and sampling continue as if the run
    had never stopped.

    The saved generators are put back at the start of training, the last moment before the first
    resumed step, not when Lightning loads the checkpoint: what the run draws while it is set up again
    (configuring optimizers, starting the loaders) was drawn in the uninterrupted run before the
    checkpoint, so it must not move the generators on. Then the training loader is started again from
    its saved position (``restart_training_data``): its start draws one number, as the uninterrupted
    run's did at the start of each epoch (a loader resumed mid-epoch keeps that draw out, see
    datamodules/resumable.py).
    """

    def __init__(self):
        self._to_restore = None

    def state_dict(self) -> dict:
        states = _collect_rng_states()
        if "numpy" in states:  # plain lists: checkpoints stay loadable with torch.load(weights_only=True)
            kind, keys, position, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, keys.tolist(), position, has_gauss, gauss)
        return {"rng": states}

    def load_state_dict(self, state_dict: dict) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        saved, self._to_restore = self._to_restore, None
        if saved is not None:  # a resumed run
            _restore_rng_states(saved)
            restart_training_data(trainer)


def _restore_rng_states(state_dict: dict) -> None:
    states = dict(state_dict["rng"])
    if "numpy" in states:
        import numpy as np

        kind, keys, position, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss)
    cuda = states.get("torch.cuda")
    if cuda is not None and (not torch.cuda.is_available() or len(cuda) != torch.cuda.device_count()):
        states.pop("torch.cuda")  # resumed on other hardware: the GPU generators cannot carry over
    _set_rng_states(states)


def restart_training_data(trainer: L.Trainer) -> None:
    """In a resumed run, give the training loader its saved position (the batches of the epoch already
    trained on) if Lightning has not, and start its iteration again.

    Lightning gives the position when it sets up the training data after restoring the loops, and starts
    iterating right then. A module that asks for ``trainer.estimated_stepping_batches`` in
    ``configure_optimizers`` (a schedule per step) makes Lightning set the data up and start iterating
    earlier, before the loops are restored: the position would never be given, and the resumed epoch
    would start from its first batch again. (Lightning 2.6's fit loop; tests/test_exact_resume.py checks
    the result.)
    """
    loop = trainer.fit_loop
    if loop._combined_loader is None or loop._data_fetcher is None:
        return
    loop._load_combined_loader_states()  # nothing when Lightning gave the position already
    iter(loop._data_fetcher)


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
    # a second writer of last.ckpt, inside epochs (Lightning broadcasts rank 0's time decision)
    if options.checkpoint_every_n_steps:
        interval = {"every_n_train_steps": options.checkpoint_every_n_steps}
    else:
        interval = {"train_time_interval": timedelta(minutes=options.checkpoint_every_minutes)}
    mid_epoch = MidEpochCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0, save_last=True,
                                   enable_version_counter=False, **interval)
    callbacks = [checkpoints, mid_epoch, RandomStateInCheckpoint(), StopOnNonFiniteLoss(run_dir / "checkpoints")]
    if options.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    check_precision(options)
    try:
        trainer = _trainer(options, config, run_dir, loggers, callbacks, use_distributed_sampler)
        # Lightning checks devices and nodes against a SLURM allocation only when it launches; check now
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if environment is not None:
            environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
        return trainer
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        # Lightning's message says what is wrong; name the flag it comes from
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{_flag_for(message, options)}: {message}") from None


def _flag_for(message: str, options: TrainerOptions) -> str:
    lowered = message.lower()
    for word, flag in (("precision", f"--precision {options.precision}"), ("strategy", f"--strategy {options.strategy}"),
                       ("num_nodes", f"--nodes {options.nodes}"), ("accelerator", f"--accelerator {options.accelerator}"),
                       ("device", f"--devices {options.devices}"), ("gpu", f"--accelerator {options.accelerator}")):
        if word in lowered:
            return flag
    return (f"trainer options (--accelerator {options.accelerator} --devices {options.devices} --nodes {options.nodes} "
            f"--strategy {options.strategy} --precision {options.precision})")


def check_precision(options: TrainerOptions) -> None:
    """Mixed precision only where the hardware has it, said before anything starts."""
    precision = str(options.precision)
    on_cuda = torch.cuda.is_available() and options.accelerator in ("gpu", "cuda", "auto")
    if precision in ("16-mixed", "16") and not on_cuda and options.accelerator != "mps":
        # Lightning would silently switch to bfloat16 here, and the record would say float16
        raise UserError(f"--precision {precision}: float16 mixed precision needs a CUDA GPU (none is in use here); "
                        f"use --precision bf16-mixed or 32-true")
    if precision.startswith("bf16") and on_cuda and not torch.cuda.is_bf16_supported():
        raise UserError(f"--precision {precision}: this GPU ({torch.cuda.get_device_name(0)}) has no bfloat16 support; "
                        f"use --precision 16-mixed or 32-true")


def _trainer(options: TrainerOptions, config, run_dir: Path, loggers: list, callbacks: list,
             use_distributed_sampler: bool) -> L.Trainer:
    return L.Trainer(
        accelerator=options.accelerator,
        devices=_devices(str(options.devices)),
        num_nodes=options.nodes,
        strategy=options.strategy,
        precision=options.precision,
        deterministic=options.deterministic,
        plugins=[AtomicCheckpointIO()],
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
