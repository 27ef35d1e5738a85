"""``python -m repro table``: results tables and figures, generated from run records, never typed.

For each paper: the published rows (from the registry, i.e. the paper's own file) beside this
suite's runs (from ``results/runs/*.json``), as Markdown, plus figures: the validation metric and the
training perplexity per epoch, and the paper's own figures. Each file is written atomically, and the
output depends on the records alone, so regenerating twice changes nothing.

A row whose record does not trace to a clean commit holding the code that made it is shown as a
draft, with the reason; ``python -m repro table --check`` fails on any such row and on any generated
file that is stale (Markdown compared byte for byte; a figure by the digest of what it plots, which
``save_figure`` writes into the PNG).

Figures that show real dataset photographs go to ``results/local/`` (ignored by git): those images
are licensed to their owners for research use, not for redistribution.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from repro.config import config_to_dict, resolve_config
from repro.errors import UserError
from repro.records import load_records, trace_problem, write_atomic
from repro.registry import PaperEntry, all_papers

LOCAL_FIGURES = "local"  # results/local/: figures of licensed media, written for the user, kept out of git
DIGEST_KEY = "repro-figure-digest"


def _format(value) -> str:
    return "" if value is None else f"{value:.1f}"


def local_figure_path(results_dir: Path, name: str) -> Path:
    return results_dir / LOCAL_FIGURES / name


def differences_from_preset(entry: PaperEntry, record: dict, ignore: tuple[str, ...] = ()) -> str:
    """How a run's config differs from its preset as the code defines it now (``key=value ...``).

    Presets evolve; a record keeps the config it ran with, so the table says what was different.
    """
    if entry.config_class is None or "config" not in record:
        return ""
    try:
        # through JSON, as the record was: a tuple field reads back as a list and is no difference
        current = json.loads(json.dumps(config_to_dict(resolve_config(entry.config_class, entry.presets, record["preset"]))))
    except UserError:
        return " ".join(record.get("overrides") or [])
    return _portable(" ".join(f"{key}={value}" for key, value in record["config"].items()
                              if key in current and current[key] != value and key not in ignore),
                     record.get("command", ""))


def _portable(text: str, command: str) -> str:
    """``text`` with the run's output folder (its ``--out``) written ``OUT``: a checkpoint another run
    left there (``init_from=...``) reads the same on every machine."""
    words = command.split()
    out = words[words.index("--out") + 1] if "--out" in words[:-1] else None
    return text.replace(out.rstrip("/") + "/", "OUT/") if out else text


@dataclass
class Row:
    """The runs of one configuration on one dataset: one per seed (the latest of each seed)."""

    preset: str
    differences: str
    dataset: str
    records: list[dict]

    @property
    def real(self) -> bool:
        return self.records[-1].get("data_source") == "real"

    def values(self, metric: str) -> list[float]:
        return [r["metrics"][metric] for r in self.records if r["metrics"].get(metric) is not None]

    def cell(self, metric: str) -> str:
        values = self.values(metric)
        if not values:
            return ""
        if len(values) == 1:
            return _format(values[0])
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.mean(values) if values else None

    @property
    def seeds(self) -> int:
        return len(self.records)

    @property
    def epochs(self) -> str:
        """The epochs its runs trained: one number, or the range where seeds differ (a time-capped
        preset trains as many epochs as the machine's load allows)."""
        counts = sorted({r["epochs"] for r in self.records if r.get("epochs") is not None})
        return "" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def rows_of(entry: PaperEntry, records: list[dict]) -> list[Row]:
    """Records grouped by (preset, config differences other than the seed, dataset, data subset)."""
    groups: dict[tuple, dict] = {}
    for record in records:  # oldest first, so the newest run of each seed wins
        subset = (record.get("data_subset") or {}).get("description", "")
        key = (record["preset"], differences_from_preset(entry, record, ignore=("seed",)), record["dataset"], subset)
        groups.setdefault(key, {})[record.get("config", {}).get("seed")] = record
    rows = [Row(preset, differences, dataset, sorted(by_seed.values(), key=lambda r: r.get("finished_at", "")))
            for (preset, differences, dataset, _), by_seed in groups.items()]
    return sorted(rows, key=lambda row: (row.dataset, row.preset, row.differences))


def _where(record: dict) -> str:
    hardware = record.get("hardware", {})
    return f"{hardware.get('world_size', 1)}x {', '.join(hardware.get('gpus') or []) or 'CPU'}"


def _suite_lines(entry: PaperEntry, rows: list[Row], columns: list[str], problems: dict[str, str | None]) -> list[str]:
    lines = []
    for row in rows:
        latest = row.records[-1]
        drafts = [problems.get(r["_path"]) for r in row.records if problems.get(r["_path"])]
        source = f"DRAFT ({drafts[0]})" if drafts else "this suite"
        system = latest.get("system") or f"preset `{row.preset}`" + (f" `{row.differences}`" if row.differences else "")
        if row.seeds > 1:
            system += f", {row.seeds} seeds (mean ± sd)"
        subset = (latest.get("data_subset") or {}).get("description")
        dataset = row.dataset + (f" ({subset})" if subset else "")
        wall = statistics.mean(r.get("wall_time_s", 0) for r in row.records) / 60
        commits = sorted({(r.get("git") or {}).get("commit", "")[:7] for r in row.records})
        names = ", ".join(f"`{Path(r['_path']).name}`" for r in row.records)
        lines.append("| " + " | ".join([source, system, dataset, *[row.cell(c) for c in columns],
                                        row.epochs, f"{wall:.1f} min on {_where(latest)}",
                                        latest.get("finished_at", "")[:10], ", ".join(commits), names]) + " |")
        # A baseline a run scores beside its model ("test/bleu_4@nearest-neighbour") gets its own row
        for baseline in sorted({key.split("@", 1)[1] for r in row.records for key in r["metrics"] if "@" in key}):
            baseline_row = Row(row.preset, row.differences, row.dataset,
                               [{**r, "metrics": {c: r["metrics"].get(f"{c}@{baseline}") for c in columns}}
                                for r in row.records])
            lines.append("| " + " | ".join([source, f"baseline: {baseline} (in the runs of {system})", dataset,
                                            *[baseline_row.cell(c) for c in columns], "", "", "", "", ""]) + " |")
    return lines


def _columns(entry: PaperEntry, rows: list[Row], published: bool) -> list[str]:
    """The paper's metrics that some row of this table has."""
    present = {metric for row in rows for r in row.records for metric in r["metrics"]}
    present = {metric.split("@", 1)[0] for metric in present}
    if published:
        present |= {f"{result.split}/{result.metric}" for result in entry.published}
    return [metric for metric in entry.metrics if metric in present] or list(entry.metrics)


def paper_table(entry: PaperEntry, records: list[dict], problems: dict[str, str | None]) -> str:
    rows = rows_of(entry, records)
    real, sample = [row for row in rows if row.real], [row for row in rows if not row.real]
    lines = [f"# {entry.name}: {entry.title}", "", f"{entry.citation}. Task: {entry.task}.", "",
             "Generated by `python -m repro table` from the run records in `results/runs/`; published numbers come "
             "from the paper's file in `papers/`. A row names its preset and how its config differs from that preset "
             "as defined now (its records hold the full resolved config), the data it used, the hardware and wall "
             "time, the date and commit of its runs, and its records. Several seeds of one configuration are one "
             "row: mean ± standard deviation.", ""]
    tail = ["epochs", "wall time", "date", "commit", "records"]
    columns = _columns(entry, real, published=True)
    lines += ["## The paper's numbers and this suite's on real data", "",
              "| " + " | ".join(["source", "system", "dataset", *columns, *tail]) + " |",
              "|" + "---|" * (3 + len(columns) + len(tail))]
    published_rows: dict[tuple, dict] = {}  # one row per (source, system, dataset), as in the paper's table
    for result in entry.published:
        published_rows.setdefault((result.source, result.system, result.dataset), {})[
            f"{result.split}/{result.metric}"] = result.value
    for (source, system, dataset), values in published_rows.items():
        cells = ["" if values.get(c) is None else f"{values[c]:g}" for c in columns]
        lines.append("| " + " | ".join([f"published ({source})", system, dataset, *cells, "", "", "", "", ""]) + " |")
    lines += _suite_lines(entry, real, columns, problems)
    if not real:
        lines += ["", "No run on real data recorded yet."]
    if sample:
        columns = _columns(entry, sample, published=False)
        lines += ["", "## On the embedded sample (generated by the suite; not comparable with the paper)", "",
                  "| " + " | ".join(["source", "system", "dataset", *columns, *tail]) + " |",
                  "|" + "---|" * (3 + len(columns) + len(tail))]
        lines += _suite_lines(entry, sample, columns, problems)
    drafts = [r for r in records if problems.get(r["_path"])]
    if drafts:
        lines += ["", f"{len(drafts)} record(s) behind rows marked DRAFT do not trace to a clean commit holding the "
                      f"code that made them; `python -m repro table --check` fails on them."]
    return "\n".join(lines) + "\n"


def shown_command(command: str, several_seeds: bool = False) -> str:
    """A record's command as a reader retypes it: without where that machine put its outputs and records
    (``--out``, ``--results``) or its quiet flag, and with ``--seed SEED`` for a row of several seeds."""
    words, shown, skip = command.split(), [], False
    for index, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in ("--out", "--results", "--seed"):
            skip = True
            continue
        if word == "--no-progress":
            continue
        shown.append(word)
    return _portable(" ".join(shown), command) + (" --seed SEED" if several_seeds else "")


def reproduce_section(entry: PaperEntry, records: list[dict]) -> str:
    """How to reproduce: each configuration's exact command, what it gave here and on what, and the
    same run as a cluster job."""
    rows = [row for row in rows_of(entry, records) if row.records[-1].get("command", "").startswith("python -m repro run")]
    if not rows:
        return ""
    # each row's expected number: the paper's headline metric (as marked on its published rows), else the
    # first of the paper's metrics the row reports (a lowercased run has test/bleu_lc, not test/bleu)
    candidates = list(dict.fromkeys([f"{p.split}/{p.metric}" for p in entry.published if p.headline]
                                    + list(entry.metrics)))
    lines = ["", "## How to reproduce", "",
             "Each command below is the one its records hold (`DATA_ROOT` is the folder given as `--data-dir`, "
             "`$REPRO_DATA` or `~/.cache/repro/data`; `python -m repro data prepare DATASET` says what goes there; "
             "`OUT` is the folder given as `--out`, `outputs` by default). "
             "Expected: the row's numbers above, within the spread of seeds.", ""]
    for row in rows:
        latest = row.records[-1]
        command = latest["command"]
        seeds = sorted(r.get("config", {}).get("seed") for r in row.records)
        headline = next((metric for metric in candidates if row.cell(metric)), candidates[0])
        value = row.cell(headline)
        command = shown_command(command, several_seeds=row.seeds > 1)
        lines += [f"- `{row.preset}` on {row.dataset}" + (f" ({row.differences})" if row.differences else "")
                  + f": {headline} {value or 'n/a'}" + (f" over seeds {', '.join(map(str, seeds))}" if row.seeds > 1 else "")
                  + f"; {statistics.mean(r.get('wall_time_s', 0) for r in row.records) / 60:.1f} min each on "
                  f"{_where(latest)} ({(latest.get('hardware') or {}).get('cpu', '')})", "",
                  f"      {command}", ""]
    lines += ["On a SLURM cluster, the same run as a requeueable multi-GPU job (it resumes after preemption):", "",
              f"      python -m repro submit {entry.name} --preset paper --data-dir DATA_ROOT --nodes 1 --gpus-per-node 4 "
              f"--time 1-00:00:00 [--partition P] [--dry-run]", "",
              "Time of the `paper` preset on a GPU: not measured yet (no GPU was available to the runs above).", ""]
    return "\n".join(lines)


def _overview_line(entry: PaperEntry, published, records: list[dict], problems: dict[str, str | None]) -> str:
    metric = f"{published.split}/{published.metric}"
    paper_cell = f"{published.value:g} ({published.system}; {published.dataset}, {published.source})"

    candidates = rows_of(entry, records)

    def reporting(name: str) -> list[Row]:
        return [row for row in candidates if row.real and row.mean(name) is not None
                and not any(problems.get(r["_path"]) for r in row.records) and row.preset != "human-agreement"
                and all(row.records[-1].get("config", {}).get(key) == value for key, value in published.config)]

    rows = reporting(metric)
    comparable = [row for row in rows if row.dataset == published.dataset and not row.records[-1].get("data_subset")]
    pool, shown = comparable or rows, metric
    for other in () if pool else published.other_data_metrics:  # never beside the paper's own metric
        pool, shown = reporting(other), other
        if pool:
            break
    if not pool:
        which = " of this system (" + ", ".join(f"{k}={v}" for k, v in published.config) + ")" if published.config else ""
        return f"| [{entry.name}]({entry.name}.md) | {metric} | {paper_cell} | | | no real-data run{which} reports {metric} yet |"
    best = (min if "ppl" in shown else max)(pool, key=lambda row: row.mean(shown))
    difference = (f"{best.mean(shown) - published.value:+.1f}" if comparable else
                  "not comparable (other data)" if shown == metric else f"not comparable (other data, {shown})")
    subset = (best.records[-1].get("data_subset") or {}).get("description")
    data = f"{best.dataset}" + (f" ({subset})" if subset else "") + f", preset `{best.preset}`" + (
        f" `{best.differences}`" if best.differences else "") + (f", {best.seeds} seeds" if best.seeds > 1 else "")
    return f"| [{entry.name}]({entry.name}.md) | {metric} | {paper_cell} | {best.cell(shown)} | {difference} | {data} |"


def overview(papers: list[PaperEntry], by_paper: dict[str, list[dict]], problems: dict[str, str | None]) -> str:
    """results/README.md: per paper and headline metric, the published number beside this suite's best
    comparable row, and the difference where dataset, split and metric are the same."""
    lines = ["# Results", "",
             "Generated by `python -m repro table` from the run records in `results/runs/`; `python -m repro table "
             "--check` fails if any file here is stale or any row's record does not trace to a clean commit. "
             "Each paper's page has every row, the embedded-sample runs, figures and how to reproduce them.", "",
             "A difference (suite minus paper) is shown only where the dataset, its split and the metric are the same "
             "as the paper's and the whole split was used; otherwise the suite's row is on other data and only says so.", "",
             "| paper | metric | published | this suite | difference | suite's data and configuration |",
             "|---|---|---|---|---|---|"]
    for entry in papers:
        if not entry.built:
            lines.append(f"| [{entry.name}]({entry.name}.md) | | | | | not built yet |")
            continue
        for headline in [r for r in entry.published if r.headline] or entry.published[:1]:
            lines.append(_overview_line(entry, headline, by_paper.get(entry.name, []), problems))
    return "\n".join(lines) + "\n"


def figure_digest(figure) -> str:
    """A digest of what a figure shows: every axes' title, labels, texts, plotted lines and images."""
    digest = hashlib.sha256()
    for axis in figure.get_axes():
        parts = [axis.get_title(), axis.get_title(loc="left"), axis.get_xlabel(), axis.get_ylabel(),
                 [label.get_text() for label in axis.get_xticklabels()],
                 [text.get_text() for text in axis.texts],
                 [(line.get_label(), [[round(float(v), 6) for v in point] for point in line.get_xydata()])
                  for line in axis.get_lines()]]
        digest.update(repr(parts).encode())
        for image in axis.get_images():
            digest.update(image.get_array().tobytes())
    if figure._suptitle is not None:
        digest.update(figure._suptitle.get_text().encode())
    return digest.hexdigest()[:16]


def stored_digest(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.text.get(DIGEST_KEY)
    except (OSError, AttributeError):
        return None


def save_figure(figure, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (a reader never sees half a PNG) and close it; the PNG
    carries the digest of what it plots, so ``repro table --check`` can tell a stale figure."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=dpi, metadata={DIGEST_KEY: figure_digest(figure), "Software": "repro"})
    plt.close(figure)
    temporary.replace(path)
    return path


def history_figure(entry: PaperEntry, records: list[dict], path: Path) -> Path | None:
    """The monitored validation metric per epoch, one line per recorded run; beside it, where the runs
    recorded them, training and validation perplexity per epoch (how far training fits the data)."""
    metric = entry.monitor[0]
    runs = [r for r in records if r.get("history") and any(metric in h for h in r["history"])]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_training = [r for r in runs if any("train/ppl_epoch" in h and "val/ppl" in h for h in r["history"])]
    panels = 2 if with_training and metric != "val/ppl" else 1
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    axis = axes[0][0]
    for record in runs:
        points = [(h["epoch"] + 1, h[metric]) for h in record["history"] if metric in h]
        overrides = differences_from_preset(entry, record)
        label = f"{record['preset']} {overrides} on {record['dataset']}".replace("  ", " ")
        line, = axis.plot(*zip(*points), marker="o", label=label)
        if metric == "val/ppl" and record in with_training:
            training = [(h["epoch"] + 1, h["train/ppl_epoch"]) for h in record["history"] if "train/ppl_epoch" in h]
            axis.plot(*zip(*training), linestyle=":", color=line.get_color(), label=f"{label} (training)")
    datasets = {record["dataset"] for record in runs}
    for result in entry.published:  # a published number only beside runs on the same dataset
        if result.dataset in datasets and f"{result.split}/{result.metric}" == metric.replace("val/", "test/"):
            axis.axhline(result.value, linestyle="--", color="gray", label=f"published {result.system} (test)")
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(f"{entry.name}: {metric} per epoch" + (" (dotted: training)" if metric == "val/ppl" and with_training else ""))
    axis.legend(fontsize=7)
    if panels == 2:
        axis = axes[0][1]
        for record in with_training:
            label = f"{record['preset']} on {record['dataset']}"
            validation = [(h["epoch"] + 1, h["val/ppl"]) for h in record["history"] if "val/ppl" in h]
            training = [(h["epoch"] + 1, h["train/ppl_epoch"]) for h in record["history"] if "train/ppl_epoch" in h]
            line, = axis.plot(*zip(*validation), marker="o", label=f"{label}: validation")
            axis.plot(*zip(*training), linestyle=":", color=line.get_color(), label=f"{label}: training")
        axis.set_xlabel("epoch")
        axis.set_ylabel("perplexity")
        axis.set_yscale("log")
        axis.set_title(f"{entry.name}: training and validation perplexity")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)


def write_tables(results_dir: Path) -> list[Path]:
    """Regenerate every paper's page, its figures and the index from ``results_dir/runs``."""
    records = load_records(results_dir / "runs")
    problems = {record["_path"]: trace_problem(record) for record in records}
    return _write(results_dir, results_dir, records, problems)


def _write(results_dir: Path, out: Path, records: list[dict], problems: dict[str, str | None]) -> list[Path]:
    by_paper = defaultdict(list)
    for record in records:
        by_paper[record["paper"]].append(record)
    written = []
    for entry in all_papers():
        table_path = out / f"{entry.name}.md"
        text = paper_table(entry, by_paper[entry.name], problems)
        figure = history_figure(entry, by_paper[entry.name], out / f"{entry.name}_validation.png")
        if figure is not None:
            text += f"\n![{entry.monitor[0]} per epoch]({figure.name})\n"
            written.append(figure)
        for make_figures in entry.figures:
            for caption, path in make_figures(by_paper[entry.name], out):
                if path.parent.name == LOCAL_FIGURES:
                    text += f"\n({caption}: drawn into `results/{LOCAL_FIGURES}/{path.name}`, not in git: dataset photographs)\n"
                else:
                    text += f"\n![{caption}]({path.name})\n"
                written.append(path)
        text += reproduce_section(entry, by_paper[entry.name])
        write_atomic(table_path, text)
        written.append(table_path)
    write_atomic(out / "README.md", overview(all_papers(), by_paper, problems))
    written.append(out / "README.md")
    return written


def check_tables(results_dir: Path) -> list[str]:
    """What ``repro table --check`` finds wrong: untraceable records and stale generated files."""
    records = load_records(results_dir / "runs")
    problems = {record["_path"]: trace_problem(record) for record in records}
    found = [f"{Path(path).name}: {problem}" for path, problem in problems.items() if problem]
    with tempfile.TemporaryDirectory() as scratch:
        fresh = _write(results_dir, Path(scratch), records, problems)
        for path in fresh:
            relative = path.relative_to(scratch)
            if relative.parts[0] == LOCAL_FIGURES:
                continue
            committed = results_dir / relative
            if not committed.is_file():
                found.append(f"{committed}: missing (run `python -m repro table`)")
            elif path.suffix == ".png":
                if stored_digest(committed) != stored_digest(path):
                    found.append(f"{committed}: stale figure (run `python -m repro table`)")
            elif committed.read_bytes() != path.read_bytes():
                found.append(f"{committed}: stale (run `python -m repro table`)")
        written = {path.relative_to(scratch) for path in fresh}
        for leftover in sorted(results_dir.glob("*.png")):  # a figure no record draws any more
            if leftover.relative_to(results_dir) not in written and stored_digest(leftover) is not None:
                found.append(f"{leftover}: no run record draws it any more (delete it)")
        shutil.rmtree(scratch, ignore_errors=True)
    return found
