"""The command line's grammar: every command and flag of ``python -m repro`` (parsing only), and a
recorded ``repro run`` command turned back into the request it stands for, so that a row's printed
command can be checked against its record."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from repro.app.run import RunRequest
from repro.errors import UserError
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
    table.add_argument("--data-dir", help="with --check: data root for re-scoring real-data records (default: "
                                          "$REPRO_DATA, else ~/.cache/repro/data)")

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
    verify = commands.add_parser("verify", help="replay a run record's first training steps at HEAD and compare "
                                                "the losses (bit for bit on the same machine)")
    verify.add_argument("records", nargs="+", type=Path, help="run records (results/runs/*.json)")
    verify.add_argument("--steps", type=int, help="how many of the recorded steps (default: all the record keeps)")
    verify.add_argument("--data-dir", help="data root (default: $REPRO_DATA, else ~/.cache/repro/data)")

    rescore = commands.add_parser("rescore", help="recompute a run record's metrics from the predictions kept "
                                                  "beside it, and compare")
    rescore.add_argument("records", nargs="+", type=Path, help="run records (results/runs/*.json)")
    rescore.add_argument("--data-dir", help="data root, for a real dataset's references (default: $REPRO_DATA, "
                                            "else ~/.cache/repro/data)")

    return parser


def run_request(args: argparse.Namespace) -> RunRequest:
    """What ``repro run``'s parsed flags ask for."""
    options = TrainerOptions(accelerator=args.accelerator, devices=args.devices, nodes=args.nodes,
                             precision=args.precision, strategy=args.strategy, deterministic=args.deterministic,
                             wandb=args.wandb, progress_bar=not args.no_progress, compile=args.compile,
                             checkpoint_every_n_steps=args.checkpoint_every_n_steps,
                             checkpoint_every_minutes=args.checkpoint_every_minutes)
    return RunRequest(paper=args.paper, preset=args.preset, data=args.data, data_dir=args.data_dir,
                      overrides=args.overrides, seed=args.seed, max_epochs=args.max_epochs,
                      accumulate_grad_batches=args.accumulate_grad_batches, resume=args.resume,
                      out=args.out, results=args.results, print_config=args.print_config, trainer=options)


def request_of_command(command: str) -> RunRequest:
    """The request a recorded command line (``python -m repro run PAPER ...``) makes, parsed as the
    command line parses it; one line naming the command when it is not such a command."""
    words = shlex.split(command)
    if words[:4] != ["python", "-m", "repro", "run"]:
        raise UserError(f"{command!r}: not a `python -m repro run` command")
    try:
        return run_request(build_parser().parse_args(words[3:]))
    except SystemExit:
        raise UserError(f"{command!r}: the command line does not parse any more") from None
