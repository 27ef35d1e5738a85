"""The command line: ``python -m repro {list,run,submit,data,table,sample,bench}``.

Only parsing and printing live here; each command calls one function elsewhere. A ``UserError``
anywhere becomes one ``error: ...`` line and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from datamodules.catalog import DATASETS, get_dataset, resolve_data_dir
from repro.app.checkpoints import load_module
from repro.app.features import extract
from repro.app.figures import caption_files_figure
from repro.app.human_agreement import run_human_agreement
from repro.app.run import RunRequest, check_writable, run
from repro.app.submit import submit
from repro.app.tables import check_tables, write_tables
from repro.app.translate import run_translate
from repro.captioning.module import CaptioningModule
from repro.errors import UserError
from repro.language_modeling.module import LanguageModelModule
from repro.registry import all_papers
from repro.training.trainer import TrainerOptions


def _add_run_arguments(parser: argparse.ArgumentParser, submit: bool = False) -> None:
    """The flags of ``run``; ``submit`` takes the same ones except those it sets itself (devices, resume...)."""
    parser.add_argument("paper", help="a registered paper, e.g. mikolov2010 (see `repro list`)")
    parser.add_argument("--preset", help="named configuration: paper (published), sample, smoke, cpu, ... "
                                         "(default: paper on real data, sample on the embedded sample)")
    parser.add_argument("--data", default="auto", help="dataset name, or auto: the real dataset if found, else the embedded sample")
    parser.add_argument("--data-dir", help="data root (default: $REPRO_DATA, else ~/.cache/repro/data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, type-checked (repeatable)")
    if not submit:
        parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-epochs", type=int)
    if not submit:
        parser.add_argument("--accelerator", default="auto", help="cpu, gpu, mps, auto")
        parser.add_argument("--devices", default="auto", help="devices per node: a count, a list, or auto")
    parser.add_argument("--nodes", type=int, default=1, help="machines; DDP spans devices x nodes processes")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy (auto picks DDP for several devices)")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed (CUDA), ...")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (recorded)")
    parser.add_argument("--accumulate-grad-batches", type=int, metavar="N",
                        help="sum gradients over N batches per update (the config's accumulate_grad_batches)")
    parser.add_argument("--checkpoint-every-n-steps", type=int, metavar="N",
                        help="also write last.ckpt every N training steps (default: every --checkpoint-every-minutes)")
    parser.add_argument("--checkpoint-every-minutes", type=float, default=30.0, metavar="M",
                        help="write last.ckpt every M minutes inside epochs (default 30)")
    if not submit:
        parser.add_argument("--resume", nargs="?", const="last", metavar="RUN_DIR|CKPT|last",
                            help="continue a run from its last checkpoint (bare --resume: the latest matching run)")
    parser.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (offline without a key)")
    parser.add_argument("--out", default="outputs", help="where run directories (checkpoints, logs) go")
    parser.add_argument("--results", default="results", help="where run records go (RESULTS/runs)")
    if not submit:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars (batch jobs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered papers, their datasets, metrics and published numbers")
    _add_run_arguments(commands.add_parser("run", help="train and evaluate a paper's model"))
    submit = commands.add_parser("submit", help="run on a SLURM cluster: sbatch a job that srun's `repro run`, "
                                                "requeued and resumed on preemption")
    _add_run_arguments(submit, submit=True)
    submit.add_argument("--gpus-per-node", type=int, required=True, help="GPUs (= processes) per node")
    submit.add_argument("--partition", help="SLURM partition")
    submit.add_argument("--time", help="time limit, e.g. 2-00:00:00 (a preempted or timed-out job is requeued)")
    submit.add_argument("--account", help="SLURM account to charge")
    submit.add_argument("--cpus-per-task", type=int, help="CPU cores per process (data loading)")
    submit.add_argument("--seeds", help="several seeds as one job array, one seed a task (e.g. 1,2,3); "
                                         "each task is resumed in its own run directory on requeue")
    submit.add_argument("--dry-run", action="store_true", help="print the batch script instead of submitting it")

    data = commands.add_parser("data", help="datasets: where they come from, and preparing them")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    data_list = data_commands.add_parser("list", help="known datasets and whether they are present")
    data_list.add_argument("--data-dir")
    prepare = data_commands.add_parser(
        "prepare", help="download (or unpack a local archive) into the data root, then prepare the compact form a "
                        "run maps (tokenized id arrays), e.g. ahead of a cluster job")
    prepare.add_argument("dataset")
    prepare.add_argument("--archive", type=Path, help="a local copy of the official archive")
    prepare.add_argument("--data-dir")
    prepare.add_argument("--source", default="", help="translation: source language (default: the corpus's first)")
    prepare.add_argument("--target", default="", help="translation: target language (default: the corpus's second)")
    prepare.add_argument("--test-set", default="", help="translation: the test set (default: the corpus's standard one)")
    prepare.add_argument("--lowercase", action="store_true", help="translation: lowercased tokens (as --set lowercase=true)")
    prepare.add_argument("--workers", type=int, default=0, help="tokenizing processes (default: every core)")
    prepare.add_argument("--download-only", action="store_true", help="only download or unpack, as before")

    table = commands.add_parser("table", help="regenerate results tables and figures from run records")
    table.add_argument("--results", default="results")
    table.add_argument("--check", action="store_true", help="write nothing; fail (exit 1) if a generated file is stale "
                                                           "or a row's record does not trace to a clean commit")

    sample = commands.add_parser("sample", help="generate text from a trained language model")
    sample.add_argument("--ckpt", required=True, type=Path)
    sample.add_argument("--sentences", type=int, default=5)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)

    human = commands.add_parser("human-agreement", help="score human captions leave-one-out (the papers' Human rows)")
    human.add_argument("dataset", help="a caption dataset: flickr8k, msvd, ...")
    human.add_argument("--split", default="test")
    human.add_argument("--paper", help="the paper whose table gets the row (default: the first built captioner of the dataset)")
    human.add_argument("--data-dir")
    human.add_argument("--results", type=Path, default=Path("results"))

    translate = commands.add_parser("translate", help="translate sentences with trained models (an ensemble if several)")
    translate.add_argument("sentences", nargs="*", help="sentences to translate (or --input FILE)")
    translate.add_argument("--ckpt", required=True, type=Path, action="append", help="a checkpoint (repeat for an ensemble)")
    translate.add_argument("--input", type=Path, help="a file with one sentence per line")
    translate.add_argument("--beam-size", type=int, help="default: the model's config (12, as published)")

    caption = commands.add_parser("caption", help="caption images with a trained captioning model")
    caption.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...)")
    caption.add_argument("--ckpt", required=True, type=Path)
    caption.add_argument("--beam-size", type=int, help="default: the model's config")
    caption.add_argument("--figure", type=Path, help="also draw the files with their captions (and, for an "
                                                    "attention model, where it looked for each word) into this PNG")

    bench = commands.add_parser("bench", help="throughput benchmark of a paper (prints a table, writes JSON)")
    bench.add_argument("paper", help="a paper with a benchmark (mikolov2010, ...) or beam_search")
    bench.add_argument("--quick", action="store_true", help="a few seconds per measurement (for CI)")
    bench.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    bench.add_argument("options", nargs=argparse.REMAINDER,
                       help="the benchmark's own options (e.g. bench scale --sizes 20000,200000), passed on")

    features = commands.add_parser("features", help="image features: run a frozen CNN once and cache its output")
    features_commands = features.add_subparsers(dest="features_command", required=True)
    extract = features_commands.add_parser("extract", help="encode a dataset's images into the feature cache")
    extract.add_argument("dataset", help="a caption dataset (flickr8k, coco, ...); with --images, the cache's name")
    extract.add_argument("--encoder", default="efficientnet-lite0", help="see repro.captioning.image_encoders.ENCODERS")
    extract.add_argument("--weights", default="imagenet", choices=("imagenet", "random"))
    extract.add_argument("--spatial", action="store_true", help="also cache the spatial maps (attention models)")
    extract.add_argument("--images", type=Path, help="encode every .jpg/.png in this folder instead of a dataset")
    extract.add_argument("--data-dir")
    extract.add_argument("--batch-size", type=int, help="images per forward pass (default: 4 on a CPU, 32 on a GPU)")
    extract.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    extract.add_argument("--image-size", type=int, help="input resolution (default: the encoder's own)")
    extract.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    extract.add_argument("--no-progress", action="store_true")
    return parser


def command_list() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="repro: registered papers", show_lines=True)
    for column in ("paper", "status", "task", "datasets", "metrics", "published (compared with)"):
        table.add_column(column)
    for entry in all_papers():
        published = "\n".join(f"{r.system}: {r.dataset} {r.split} {r.metric} {r.value:g} ({r.source})" for r in entry.published)
        table.add_row(f"{entry.name}\n{entry.title}", "built" if entry.built else "not built yet", entry.task,
                      ", ".join(entry.datasets), ", ".join(entry.metrics), published or "-")
    Console(width=max(160, Console().width)).print(table)


def command_run(args: argparse.Namespace) -> None:

    options = TrainerOptions(accelerator=args.accelerator, devices=args.devices, nodes=args.nodes,
                             precision=args.precision, strategy=args.strategy, deterministic=args.deterministic,
                             wandb=args.wandb, progress_bar=not args.no_progress, compile=args.compile,
                             checkpoint_every_n_steps=args.checkpoint_every_n_steps,
                             checkpoint_every_minutes=args.checkpoint_every_minutes)
    run(RunRequest(paper=args.paper, preset=args.preset, data=args.data, data_dir=args.data_dir,
                   overrides=args.overrides, seed=args.seed, max_epochs=args.max_epochs,
                   accumulate_grad_batches=args.accumulate_grad_batches, resume=args.resume,
                   out=args.out, results=args.results, print_config=args.print_config, trainer=options))


def command_data(args: argparse.Namespace) -> None:

    root, origin = resolve_data_dir(args.data_dir)
    if args.data_command == "list":
        get_dataset("ptb")  # imports the catalog
        print(f"data root: {root} ({origin})")
        for spec in DATASETS.values():
            state = "embedded (generated)" if spec.embedded else ("present" if spec.is_present(root) else "missing")
            print(f"\n{spec.name} [{state}]\n  {spec.description}")
            if not spec.embedded:
                print(f"  files: {', '.join(str(Path(spec.folder) / f) for f in spec.required_files)}")
            for source in spec.sources:
                print(f"  source: {source.url}\n          {source.description}")
            if spec.license:
                print(f"  license: {spec.license}")
        return
    spec = get_dataset(args.dataset)
    if spec.embedded:
        raise UserError(f"data prepare {spec.name}: nothing to prepare (it is generated by the suite)")
    if spec.prepare is not None and (args.archive is not None or not spec.is_present(root)):
        spec.prepare(root, args.archive)  # download or unpack, or say where the files go
    elif spec.prepare is not None:
        try:  # its files are there: the download step says so (or checks them)
            spec.prepare(root, None)
        except UserError as why:  # e.g. no HF cache to export from: moot, the files are there (checked below)
            print(f"{spec.name}: its files are in {spec.location(root)} ({why})")
    elif args.archive is not None:
        raise UserError(f"data prepare {spec.name} --archive: {spec.name} is your own files, nothing to unpack; put them "
                        f"in {spec.location(root)}")
    if not args.download_only:
        print(spec.prepare_compact(root, {"source": args.source, "target": args.target, "test_set": args.test_set,
                                          "lowercase": args.lowercase, "workers": args.workers or None}), flush=True)


def command_sample(args: argparse.Namespace) -> None:

    module = load_module(args.ckpt)
    if not isinstance(module, LanguageModelModule):
        raise UserError(f"--ckpt {args.ckpt}: {module.hparams.get('paper')} does not generate free text")
    for line in module.sample_text(args.sentences, args.temperature, args.seed):
        print(line)


def command_caption(args: argparse.Namespace) -> None:

    if args.figure:  # said before the model is loaded and run, not after
        check_writable(args.figure.parent, "--figure")
    module = load_module(args.ckpt)
    if not isinstance(module, CaptioningModule):
        raise UserError(f"--ckpt {args.ckpt}: {module.hparams.get('paper')} is not a captioner")
    captions = module.caption_files(args.images, args.beam_size)
    for path, caption in zip(args.images, captions):
        print(f"{path}: {caption}")
    if args.figure:
        print(f"figure: {caption_files_figure(module, args.images, captions, args.figure)}")


def command_bench(args: argparse.Namespace) -> None:
    import importlib
    import pkgutil

    import benchmarks

    available = sorted(module.name for module in pkgutil.iter_modules(benchmarks.__path__))
    if args.paper not in available:
        raise UserError(f"bench {args.paper}: no such benchmark; available: {', '.join(available)}")
    importlib.import_module(f"benchmarks.{args.paper}").main([*(["--quick"] if args.quick else []), "--out", str(args.out),
                                                              *args.options])


# Numeric flags and the smallest value each accepts (argparse checks the type, this the range)
AT_LEAST = {"nodes": 1, "max_epochs": 1, "seed": 0, "accumulate_grad_batches": 1, "checkpoint_every_n_steps": 1,
            "beam_size": 1, "sentences": 1, "gpus_per_node": 1, "cpus_per_task": 1, "batch_size": 1,
            "num_workers": 0, "image_size": 16}
ABOVE_ZERO = ("checkpoint_every_minutes", "temperature")


def check_ranges(args: argparse.Namespace) -> None:
    """Out-of-range numbers are one line naming the flag, before anything runs (not a traceback from torch)."""
    for name, value in vars(args).items():
        flag = f"--{name.replace('_', '-')}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if name in AT_LEAST and value < AT_LEAST[name]:
            raise UserError(f"{flag} {value}: must be at least {AT_LEAST[name]}")
        if name in ABOVE_ZERO and not value > 0:
            raise UserError(f"{flag} {value}: must be greater than 0")
    devices = getattr(args, "devices", "auto")
    if devices != "auto":
        parts = [part.strip() for part in str(devices).split(",") if part.strip()]
        single = len(parts) == 1 and "," not in str(devices)
        valid = parts and all(part.isdigit() for part in parts) and (not single or int(parts[0]) >= 1)
        if not valid:
            raise UserError(f"--devices {devices}: expected a positive number of devices, a list of device "
                            f"indices such as 0,1, or auto")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_ranges(args)
        if args.command == "list":
            command_list()
        elif args.command == "run":
            command_run(args)
        elif args.command == "submit":

            submit(args)
        elif args.command == "data":
            command_data(args)
        elif args.command == "table":

            if args.check:
                problems = check_tables(Path(args.results))
                for problem in problems:
                    print(problem, file=sys.stderr)
                print(f"table --check: {len(problems)} problem(s)" if problems else "table --check: all current",
                      file=sys.stderr if problems else sys.stdout)
                return 1 if problems else 0
            for path in write_tables(Path(args.results)):
                print(f"wrote {path}")
        elif args.command == "sample":
            command_sample(args)
        elif args.command == "human-agreement":

            run_human_agreement(args.dataset, args.data_dir, args.results, args.split, args.paper)
        elif args.command == "translate":

            run_translate(args.ckpt, args.sentences, args.input, args.beam_size)
        elif args.command == "caption":
            command_caption(args)
        elif args.command == "bench":
            command_bench(args)
        elif args.command == "features":

            extract(args.dataset, args.encoder, args.weights, args.spatial, args.data_dir, args.images,
                    args.batch_size, args.num_workers, args.device, args.image_size, not args.no_progress)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no run record written; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
