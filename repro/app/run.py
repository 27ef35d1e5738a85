"""``python -m repro run PAPER``: config -> data -> module -> trainer -> fit, test -> run record.

Each step is one call here, in the order a reader expects; papers never reach back into this file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch

from datamodules.catalog import choose_dataset, resolve_data_dir
from repro.app.fingerprints import code_record
from repro.app.records import determinism, git_state, hardware, library_versions, read_history, write_record
from repro.config import config_to_dict, resolve_config
from repro.errors import UserError
from repro.files import write_atomic
from repro.registry import SAMPLE_PRESET, PaperEntry, all_papers, get_paper
from repro.training.batch_scaling import scaling_record
from repro.training.trainer import TrainerOptions, build_trainer

MIN_FREE_BYTES = 200 * 1024 * 1024
FIRST_STEPS = 20  # training losses a record keeps, for `repro verify` to replay at HEAD


@dataclass
class RunRequest:
    paper: str
    preset: str | None = None  # None: "paper" on real data, the paper's "sample" preset on an embedded sample
    data: str = "auto"
    data_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    seed: int | None = None
    max_epochs: int | None = None
    accumulate_grad_batches: int | None = None  # --accumulate-grad-batches: a config value, like --seed
    resume: str | None = None  # a run directory, a .ckpt file, or "last"
    out: str = "outputs"
    results: str = "results"
    print_config: bool = False
    trainer: TrainerOptions = field(default_factory=TrainerOptions)
    command: str | None = None  # the command line as the record keeps it (default: this process's arguments)


def slurm_job() -> str | None:
    """The job id when this process was started by srun in a SLURM batch job (as Lightning detects it:
    not in an interactive allocation, SLURM_JOB_NAME=bash or interactive); an array task gets its own."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect() or not os.environ.get("SLURM_JOB_ID"):
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def is_main_process() -> bool:
    # Set by Lightning's launchers and torchrun before or while the processes start; srun sets SLURM_PROCID.
    if slurm_job() is not None:
        return os.environ.get("SLURM_PROCID", "0") == "0"
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def check_writable(folder: Path, option: str) -> None:
    """Fail before training, not after hours, when outputs cannot be written; creates nothing (the
    nearest existing folder on the way must let us create the rest)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: not writable ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder}: not writable ({existing} does not let this user write in it)")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"{option} {folder}: only {free // 2**20} MiB free; need at least {MIN_FREE_BYTES // 2**20} MiB")


def run_id(request: RunRequest, dataset: str) -> str:
    """The same name in every process of a run, and no other run's: launched processes inherit it through
    the environment; cluster jobs take it from the scheduler (an array task its job and task ids), so a
    requeued job lands in its own directory again; anything else gets the time and a random suffix, so
    runs started in the same second (seeds of one job array, two shells) never share a directory."""
    if os.environ.get("REPRO_RUN_ID"):
        return os.environ["REPRO_RUN_ID"]
    job = slurm_job() or os.environ.get("TORCHELASTIC_RUN_ID")
    if job and job != "none":
        stamp = f"job{job}"
    elif os.environ.get("LOCAL_RANK") is not None:  # started by torchrun without a run id: every process
        stamp = datetime.now().strftime("%Y%m%d-%H%M")  # must find the same name; said in the README
    else:
        stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    name = f"{request.paper}-{request.preset}-{dataset}-{stamp}"
    os.environ["REPRO_RUN_ID"] = name
    return name


def make_run_directory(run_dir: Path, resuming: bool) -> Path | None:
    """Create the run directory, atomically and for this run alone; returns the outermost folder this
    call created (to remove if the run is refused before its first step), None when it created none. A
    resumed or requeued run finds its own; a fresh one that finds it taken fails rather than share it."""
    outermost = run_dir.absolute()
    while not outermost.parent.exists():
        outermost = outermost.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        return outermost
    except FileExistsError:
        if resuming:
            return None
        raise UserError(f"--out {run_dir.parent}: {run_dir.name} exists already and belongs to another run; "
                        f"resume it with --resume {run_dir}, or start again (a new run gets a new name)") from None


def remove_leftovers(run_dir: Path) -> None:
    """Temporary files of a writer that was killed mid-write (a checkpoint's ``.NAME.PID.tmp``, an atomic
    write's ``.NAME.XXXX.tmp``): never read, removed when the run starts or resumes."""
    for leftover in [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]:
        leftover.unlink(missing_ok=True)


def build_module(entry: PaperEntry, config, datamodule) -> L.LightningModule:
    """The paper's module; a network too large for this machine's memory is one line naming its sizes."""
    try:
        return entry.make_module(config, datamodule)
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not isinstance(error, MemoryError) and "alloc" not in message.lower() and "memory" not in message.lower():
            raise
        sizes = ", ".join(f"{key}={value}" for key, value in config_to_dict(config).items()
                          if key.endswith(("_size", "_layers")) and isinstance(value, int))
        raise UserError(f"building {entry.name}'s model: not enough memory ({message[:160]}); its sizes: {sizes}; "
                        f"lower one with --set") from None


def check_trained(trainer: L.Trainer, dataset: str, config) -> None:
    """A run that made no training step, or whose validation gave no batch, is refused, not recorded."""
    if trainer.global_step == 0:
        raise UserError(f"{dataset}: training made no step: the training split gives no batch of "
                        f"batch_size={config.batch_size} (too little data for one batch?)")
    if trainer.checkpoint_callback.best_model_score is None:
        raise UserError(f"{dataset}: the validation split gave no batch, so no best checkpoint could be chosen "
                        f"(an empty validation split?)")


def find_resume_checkpoint(request: RunRequest, paper_out: Path, dataset: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) for ``--resume``: a run directory, a checkpoint, or 'last'."""
    if request.resume == "last":
        candidates = sorted(paper_out.glob(f"{request.paper}-{request.preset}-{dataset}-*/checkpoints/last.ckpt"),
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"--resume last: no checkpoint of {request.paper} preset {request.preset} on {dataset} "
                            f"under {paper_out}")
        return candidates[-1].parent.parent, candidates[-1]
    target = Path(request.resume)
    if target.is_dir():
        checkpoint = automatic_resume(target)
        if checkpoint is None:
            raise UserError(f"--resume {target}: no checkpoints/last.ckpt (nor hpc_ckpt_N.ckpt) in that run directory")
        return target, checkpoint
    if target.is_file():
        return run_directory_of(target), target
    raise UserError(f"--resume {target}: no such run directory or checkpoint")


def run_directory_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to: checkpoints/{last,best}.ckpt sit one level down,
    Lightning's SLURM preemption checkpoints (hpc_ckpt_N.ckpt) in the run directory itself."""
    folder = checkpoint.resolve().parent
    if folder.name == "checkpoints" and not (folder / "config.json").is_file():
        return folder.parent
    return folder


def automatic_resume(run_dir: Path) -> Path | None:
    """A requeued or restarted job (same SLURM job id, same torchrun run id) finds its own checkpoints:
    the newest of last.ckpt and Lightning's SLURM preemption checkpoints (hpc_ckpt_N.ckpt)."""
    candidates = [p for p in [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def check_resume_compatible(checkpoint: Path, paper: str, config: dict) -> None:
    """A checkpoint from another paper, or from a different model, is refused with the differences."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    except Exception as error:  # a truncated or foreign file: name it, do not crash inside torch
        raise UserError(f"--resume {checkpoint}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if saved.get("paper") != paper:
        raise UserError(f"--resume {checkpoint}: a checkpoint of {saved.get('paper')!r}, not {paper!r}")
    # only these may change when a run is resumed
    allowed = {"max_epochs"}
    differences = sorted(k for k in set(config) | set(saved.get("config", {}))
                         if k not in allowed and config.get(k) != saved.get("config", {}).get(k))
    if differences:
        shown = ", ".join(f"{k}: saved {saved['config'].get(k)!r} vs now {config.get(k)!r}" for k in differences[:4])
        raise UserError(f"--resume {checkpoint}: checkpoint has an incompatible config ({shown})")


def choose_preset(entry: PaperEntry, requested: str | None, embedded: bool) -> tuple[str, str]:
    """The preset a run uses, and why: the one named, else the sample's on an embedded sample, else the paper's."""
    if requested is not None:
        return requested, "--preset"
    if embedded:
        return SAMPLE_PRESET, (f"no --preset given and the data is an embedded sample: the {SAMPLE_PRESET!r} preset "
                               f"trains on it in minutes offline; --preset paper is the published configuration")
    return "paper", "no --preset given and the data is real: the published configuration"


class FirstLosses(L.Callback):
    """The training loss of each of the run's first ``count`` batches (this process's), as Python floats:
    a float32 loss is exact as a JSON number, so a replay can be compared bit for bit. With
    ``stop=True`` (``repro verify``) training stops there, by raising ``ReplayDone``."""

    def __init__(self, count: int, stop: bool = False):
        self.count, self.stop, self.values = count, stop, []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        if len(self.values) < self.count:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.values.append(float(loss.detach().float().cpu()) if loss is not None else float("nan"))
        if self.stop and len(self.values) >= self.count:
            raise ReplayDone


class ReplayDone(Exception):
    """The replayed steps are done (not an error: ``replay_first_steps`` catches it)."""


def run(request: RunRequest, replay_steps: int | None = None):
    """Train, test and record one run; the run id lives in the environment only while it runs. With
    ``replay_steps``: only the first training steps, returning their losses (``repro verify``); the
    run's folder is removed and no record is written."""
    had_run_id = "REPRO_RUN_ID" in os.environ
    try:
        return _run(request, replay_steps)
    finally:
        if not had_run_id:  # a second run in the same Python process gets its own directory
            os.environ.pop("REPRO_RUN_ID", None)


def _run(request: RunRequest, replay_steps: int | None = None):
    entry: PaperEntry = get_paper(request.paper)
    if not entry.built:
        built = ", ".join(p.name for p in all_papers() if p.built)
        raise UserError(f"{entry.name} is registered but not built yet; built papers: {built}")
    data_root, root_origin = resolve_data_dir(request.data_dir)
    dataset, message = choose_dataset(request.data, entry.datasets, data_root, root_origin)
    main = is_main_process()
    preset, why = choose_preset(entry, request.preset, dataset.embedded)
    config = resolve_config(entry.config_class, entry.presets, preset, request.overrides,
                            seed=request.seed, max_epochs=request.max_epochs,
                            accumulate_grad_batches=request.accumulate_grad_batches)
    if request.print_config and replay_steps is None:
        print(json.dumps({"paper": entry.name, "preset": preset, "dataset": dataset.name,
                          "config": config_to_dict(config)}, indent=2))
        return None
    if main:
        print(message, flush=True)
        print(f"PRESET: {preset} ({why})", flush=True)
    request = dataclasses.replace(request, preset=preset)

    paper_out = Path(request.out) / entry.name
    runs_dir = Path(request.results) / "runs"
    if main:  # checked, not created: nothing is written before the inputs are known good
        check_writable(paper_out, "--out")
        check_writable(runs_dir, "--results")
    resume_checkpoint = None
    if request.resume:
        run_dir, resume_checkpoint = find_resume_checkpoint(request, paper_out, dataset.name)
        check_resume_compatible(resume_checkpoint, entry.name, config_to_dict(config))
        os.environ.setdefault("REPRO_RUN_ID", run_dir.name)
        name = run_dir.name
    else:
        name = run_id(request, dataset.name)
        run_dir = paper_out / name
        resume_checkpoint = automatic_resume(run_dir)
        if resume_checkpoint is not None:
            check_resume_compatible(resume_checkpoint, entry.name, config_to_dict(config))
            if main:
                print(f"RESUME: {run_dir} already has {resume_checkpoint.name} (a requeued or restarted job); "
                      f"continuing from it", flush=True)

    code = git_state()  # the code this process runs is the code at its start
    # the data read, the module and the trainer built: each can still refuse the run with nothing written
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = dataset.make_datamodule(config, data_root)  # the dataset's registered family says how
    module = build_module(entry, config, datamodule)
    if request.trainer.compile:
        compile_network(module, entry.name)
    trainer = build_trainer(request.trainer, config, run_dir, name, entry.monitor,
                            use_distributed_sampler=not getattr(datamodule, "shards_by_process", False))
    scaling = scaling_record(config, trainer.world_size)  # a batch that cannot be split fails here, before fit
    first_losses = FirstLosses(replay_steps or FIRST_STEPS, stop=replay_steps is not None)
    trainer.callbacks.append(first_losses)

    # only now does the run directory appear, made for this run alone
    resuming = resume_checkpoint is not None
    created = make_run_directory(run_dir, resuming) if main else None
    if main:
        remove_leftovers(run_dir)
        write_atomic(run_dir / "config.json", json.dumps(
            {"paper": entry.name, "preset": request.preset, "dataset": dataset.name,
             "config": config_to_dict(config)}, indent=2) + "\n")
    for logger in trainer.loggers:  # the resolved config, never a vocabulary (modules save theirs with logger=False)
        logger.log_hyperparams({"paper": entry.name, "preset": preset, "dataset": dataset.name, **config_to_dict(config)})

    started = time.time()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        with warnings.catch_warnings():  # no batch at all is refused below, in one line
            warnings.filterwarnings("ignore", message=r"Total length of .* across ranks is zero")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_checkpoint) if resume_checkpoint else None)
        if not trainer.interrupted and resume_checkpoint is None:
            check_trained(trainer, dataset.name, config)
    except ReplayDone:
        shutil.rmtree(created or run_dir, ignore_errors=True)
        return first_losses.values
    except BaseException:
        if created is not None and trainer.global_step == 0:  # refused before its first step: leave nothing
            shutil.rmtree(created, ignore_errors=True)
        raise
    if replay_steps is not None:  # the whole run was shorter than the steps asked for
        shutil.rmtree(created or run_dir, ignore_errors=True)
        return first_losses.values
    if trainer.interrupted:
        raise UserError(f"training was interrupted; no run record written; resume with --resume {run_dir}")
    best = trainer.checkpoint_callback.best_model_path
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.checkpoint_callback.best_model_score is not None:
        metrics[f"best_{entry.monitor[0]}"] = float(trainer.checkpoint_callback.best_model_score)
    if not trainer.is_global_zero:
        return None
    baseline_outputs = {}
    for baseline in entry.baselines:
        print(f"baseline: {baseline.__doc__.strip().splitlines()[0]}", flush=True)
        result = baseline(config, datamodule)
        metrics.update(result.metrics)
        if result.outputs:
            baseline_outputs[result.name] = result.outputs

    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {
        "paper": entry.name,
        "preset": request.preset,
        "dataset": dataset.name,
        "data_source": "embedded sample" if dataset.embedded else "real",
        "dataset_checksum": datamodule.checksum(),
        # which part of the dataset was used, when not all of it (e.g. the images present on this machine)
        "data_subset": datamodule.data_subset() if hasattr(datamodule, "data_subset") else None,
        "metrics": metrics,
        "history": read_history(run_dir / "logs"),
        "config": config_to_dict(config),
        "overrides": list(request.overrides),
        "trainer": {**request.trainer.record(), **scaling},
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "resumed_from": str(resume_checkpoint) if resume_checkpoint else None,
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_time_s": round(time.time() - started, 1),
        "run_dir": str(run_dir),
        "best_checkpoint": best,
        "command": request.command or recorded_command(sys.argv[1:]),
        "git": code if git_state() == code else {**code, "dirty": True, "changed_during_run": True},
        # the code the numbers depend on (repro.app.fingerprints), for `table --check` to compare with HEAD
        "code": code_record(entry.config_class.__module__, dataset, datamodule),
        # the first training losses from step 0, for `repro verify` to replay (none after a resume)
        "first_losses": None if resume_checkpoint else first_losses.values,
        "versions": library_versions(),
        "hardware": hardware(trainer),
        "determinism": determinism(trainer, config),
    }
    if getattr(module, "scoring", None):  # how the metrics were computed, e.g. sacreBLEU's signatures
        record["scoring"] = module.scoring
    if hasattr(module, "record_examples"):  # e.g. captioners: a few test media with their captions
        record["examples"] = module.record_examples(baseline_outputs)
    predictions = None
    if hasattr(module, "test_predictions"):  # the test outputs, for `repro rescore` (repro.app.rescore)
        predictions = module.test_predictions()
        if baseline_outputs:
            predictions["baselines"] = baseline_outputs
    record_path = write_record(record, runs_dir, predictions, embedded=dataset.embedded)
    print_summary(entry, record, record_path)
    return record


def recorded_command(argv: list[str]) -> str:
    """The command line as a record keeps it: the data root is named by the dataset and its checksum,
    never by a path of the machine it ran on."""
    shown, hide_next = [], False
    for argument in argv:
        if hide_next:
            shown.append("DATA_ROOT")
        elif argument.startswith("--data-dir="):
            argument = "--data-dir=DATA_ROOT"
        if not hide_next:
            shown.append(argument)
        hide_next = argument == "--data-dir"
    return " ".join(["python -m repro", *shown])


def compile_network(module: L.LightningModule, paper: str) -> None:
    """``--compile``: torch.compile the module's network in place (its parameter names, and so its
    checkpoints, stay those of the plain network)."""
    network = getattr(module, "network", None)
    if not isinstance(network, torch.nn.Module):
        raise UserError(f"--compile: {paper}'s module has no .network to compile")
    network.compile()


def print_summary(entry: PaperEntry, record: dict, record_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{entry.name} on {record['dataset']} ({record['data_source']}), preset {record['preset']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        table.add_row(key, f"{value:.2f}")
    console = Console()
    console.print(table)
    console.print(f"epochs {record['epochs']}, wall time {record['wall_time_s']:.0f}s")
    console.print(f"run record: {record_path}")
    console.print(f"checkpoints: {Path(record['run_dir']) / 'checkpoints'}")
