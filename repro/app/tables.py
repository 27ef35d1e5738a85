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

import json
import os
import shutil
import statistics
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from datamodules.catalog import get_dataset, resolve_data_dir
from repro.app.claims import claims_section, count_text
from repro.app.figures import FIGURES, LOCAL_FIGURES, claims_figure, history_figure, stored_digest
from repro.app.records import load_records, predictions_path, tested_versions, trace_problem
from repro.app.rescore import rescore
from repro.app.rows import Row, portable, rows_of
from repro.app.staleness import stale_reason
from repro.config import config_to_dict, resolve_config
from repro.errors import UserError
from repro.files import write_atomic
from repro.metrics import captions
from repro.registry import PaperEntry, all_papers


def _where(record: dict) -> str:
    hardware = record.get("hardware", {})
    return f"{hardware.get('world_size', 1)}x {', '.join(hardware.get('gpus') or []) or 'CPU'}"


def version_note(records: list[dict], tested: dict[str, str]) -> str:
    """"ran with torch 2.13.0 (tested: 2.14.1)" for each library whose recorded version differs from the
    tested one (a build label such as ``+cu121`` on the same release does not count, as with pip's
    ``==``); empty where every run used the tested versions or nothing is known to compare with."""
    differing: dict[str, list[str]] = {}
    for record in records:
        for name, version in (record.get("versions") or {}).items():
            tested_version = tested.get(name.lower())
            if version and tested_version and version.split("+", 1)[0] != tested_version:
                differing.setdefault(name, [])
                if version not in differing[name]:
                    differing[name].append(version)
    if not differing:
        return ""
    return "ran with " + ", ".join(f"{name} {' / '.join(versions)} (tested: {tested[name.lower()]})"
                                   for name, versions in differing.items())


def _suite_lines(entry: PaperEntry, rows: list[Row], columns: list[str], problems: dict[str, str | None]) -> list[str]:
    lines = []
    tested = tested_versions()
    for row in rows:
        latest = row.records[-1]
        drafts = [problems.get(r["_path"]) for r in row.records if problems.get(r["_path"])]
        stale = [r["_stale"] for r in row.records if r.get("_stale")]
        source = f"DRAFT ({drafts[0]})" if drafts else f"{stale[0]}" if stale else "this suite"
        system = latest.get("system") or f"preset `{row.preset}`" + (f" `{row.differences}`" if row.differences else "")
        if row.seeds > 1:
            system += f", {row.seeds} seeds (mean ± sd)"
        subset = (latest.get("data_subset") or {}).get("description")
        dataset = row.dataset + (f" ({subset})" if subset else "")
        note = version_note(row.records, tested)
        wall = statistics.mean(r.get("wall_time_s", 0) for r in row.records) / 60
        commits = sorted({(r.get("git") or {}).get("commit", "")[:7] for r in row.records})
        names = ", ".join(f"`{Path(r['_path']).name}`" for r in row.records)
        lines.append("| " + " | ".join([source, system + (f"; {note}" if note else ""), dataset,
                                        *[row.cell(c) for c in columns],
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


def paper_table(entry: PaperEntry, records: list[dict], problems: dict[str, str | None],
                by_paper: dict[str, list[dict]] | None = None, claims_figure: Path | None = None) -> str:
    rows = rows_of(entry, records)
    real, sample = [row for row in rows if row.real], [row for row in rows if not row.real]
    lines = [f"# {entry.name}: {entry.title}", "", f"{entry.citation}. Task: {entry.task}.", "",
             "Generated by `python -m repro table` from the run records in `results/runs/`; published numbers come "
             "from the paper's file in `papers/`. A row names its preset and how its config differs from that preset "
             "as defined now (its records hold the full resolved config), the data it used, the hardware and wall "
             "time, the date and commit of its runs, and its records. Several seeds of one configuration are one "
             "row: mean ± standard deviation.", "",
             "What to expect when you re-run a row: the same seed on the same machine (CPU or GPU model, thread "
             "count, library versions: each record keeps them) gives the same numbers bit for bit; on another "
             "machine floating-point sums run in another order, so expect the row's seed-to-seed spread (its ± "
             "where it has several seeds). `python -m repro verify RECORD` replays a record's first training steps "
             "and compares the losses.", ""]
    lines += claims_section(entry, by_paper if by_paper is not None else {entry.name: records})[0]
    if claims_figure is not None:
        lines += [f"![the claims' comparisons, one dot per run]({claims_figure.name})", ""]
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
    humans = [row for row in real if row.preset == "human-agreement"]
    real = [row for row in real if row.preset != "human-agreement"]
    lines += _suite_lines(entry, real, columns, problems)
    if not real:
        lines += ["", "No run on real data recorded yet."]
    for row in humans:  # its own table: other images and one reference fewer than the model rows get
        scoring = row.records[-1].get("scoring") or {}
        human_columns = _columns(entry, [row], published=False)
        lines += ["", f"## People against each other on {row.dataset} (not comparable with the rows above)", "",
                  f"Each caption of a test image scored against the image's other captions, the mean over "
                  f"{scoring.get('rounds', 'the')} rounds, on all {scoring.get('images', 'the')} images of the "
                  f"{(row.records[-1].get('config') or {}).get('split', 'test')} split: one reference fewer than a "
                  f"model is scored against, and the whole split where the model rows above may use part of it "
                  f"(their dataset column says which). The paper's own human row used its own protocol.", "",
                  "| " + " | ".join(["source", "system", "dataset", *human_columns, *tail]) + " |",
                  "|" + "---|" * (3 + len(human_columns) + len(tail))]
        lines += _suite_lines(entry, [row], human_columns, problems)
    if sample:
        columns = _columns(entry, sample, published=False)
        lines += ["", "## On the embedded sample (generated by the suite; not comparable with the paper)", "",
                  "| " + " | ".join(["source", "system", "dataset", *columns, *tail]) + " |",
                  "|" + "---|" * (3 + len(columns) + len(tail))]
        lines += _suite_lines(entry, sample, columns, problems)
    marked = sorted({r["_stale"].split(" (", 1)[0] for r in records if r.get("_stale")})
    if marked:
        lines += ["", "Rows marked " + " or ".join(marked) + " may not hold at HEAD: STALE rows' records name code or "
                  "config that has changed since they ran (`python -m repro table --check` fails on them); UNCHECKED "
                  "rows' records were made before records named their code (schema 1), so nothing shows whether "
                  "HEAD still gives them. Re-running the row's command from a clean commit makes it current."]
    shown = [r for row in rows for r in row.records]
    kept = [r for r in shown if predictions_path(Path(r["_path"])).is_file()]
    if shown:
        lines += ["", f"Re-scorable: {len(kept)} of the {len(shown)} records behind these rows keep their test outputs "
                      f"beside them (`NAME.predictions.json.gz`); `python -m repro rescore RECORD` recomputes their "
                      f"metrics, and `python -m repro table --check` does so for every one"
                  + (". The others were made before records kept their outputs and cannot be re-scored." if len(kept) < len(shown) else ".")]
    drafts = [r for r in records if problems.get(r["_path"])]
    if drafts:
        lines += ["", f"{len(drafts)} record(s) behind rows marked DRAFT do not trace to a clean commit holding the "
                      f"code that made them; `python -m repro table --check` fails on them."]
    return "\n".join(lines) + "\n"


def shown_command(command: str, several_seeds: bool = False) -> str:
    """A record's command as a reader retypes it: without where that machine put its outputs and records
    (``--out``, ``--results``) or its quiet flag, and with ``--seed SEED`` for a row of several seeds
    (a row of one run keeps its ``--seed``)."""
    words, shown, skip = command.split(), [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--out", "--results") or (word == "--seed" and several_seeds):
            skip = True
            continue
        if word == "--no-progress":
            continue
        if shown and shown[-1] == "--data-dir":
            word = "DATA_ROOT"  # older records kept the machine's folder
        shown.append(word.replace(word.split("=", 1)[-1], "DATA_ROOT") if word.startswith("--data-dir=") else word)
    return portable(" ".join(shown), command) + (" --seed SEED" if several_seeds else "")


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
    departures = departures_from_paper(entry, best.records[-1], published.config)
    difference = (f"{best.mean(shown) - published.value:+.1f}" + (f" ({departures}: not in the paper)" if departures else "")
                  if comparable else
                  "not comparable (other data)" if shown == metric else f"not comparable (other data, {shown})")
    subset = (best.records[-1].get("data_subset") or {}).get("description")
    data = f"{best.dataset}" + (f" ({subset})" if subset else "") + f", preset `{best.preset}`" + (
        f" `{best.differences}`" if best.differences else "") + (f", {best.seeds} seeds" if best.seeds > 1 else "")
    state = next((r["_stale"].split(" (", 1)[0] for r in best.records if r.get("_stale")), "")
    data += f"; {state} at HEAD" if state else ""
    return f"| [{entry.name}]({entry.name}.md) | {metric} | {paper_cell} | {best.cell(shown)} | {difference} | {data} |"


IGNORED_DEPARTURES = ("seed",)


def departures_from_paper(entry: PaperEntry, record: dict, system: tuple = (), shown: int = 3) -> str:
    """How a run's config departs from the paper's own (the ``paper`` preset as defined now, with the
    values that make the published ``system``, e.g. attention=hard), e.g. ``dropout 0.3 (paper: 0.0)``;
    empty for the paper's configuration."""
    try:
        paper = json.loads(json.dumps(config_to_dict(resolve_config(entry.config_class, entry.presets, "paper"))))
    except UserError:
        return ""
    paper.update(dict(system))
    config = record.get("config") or {}
    keys = [key for key in paper if key in config and key not in IGNORED_DEPARTURES and config[key] != paper[key]]
    text = ", ".join(f"{key} {config[key]} (paper: {paper[key]})" for key in keys[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


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
    lines += ["", "## The papers' claims", "",
              "Each paper's page opens with its central claims, the comparison of runs that tests each, and a verdict "
              "(holds here: at least 3 runs a side and a difference beyond twice its standard error).", "",
              "| paper | claims |", "|---|---|"]
    for entry in papers:
        if entry.built:
            lines.append(f"| [{entry.name}]({entry.name}.md) | {count_text(claims_section(entry, by_paper)[1])} |")
    return "\n".join(lines) + "\n"


UNCHECKED = "UNCHECKED (made before records named their code)"


def mark_stale(records: list[dict]) -> list[str]:
    """Sets ``_stale`` on each record a row shows whose code or config has moved on since it ran (or that
    cannot tell: made before records named their code); returns the problems ``table --check`` fails on:
    the fingerprinted records that are stale."""
    by_paper = defaultdict(list)
    for record in records:
        by_paper[record["paper"]].append(record)
    problems = []
    for entry in all_papers():
        for row in rows_of(entry, by_paper[entry.name]):
            for record in row.records:
                command = record.get("command", "")
                shown = shown_command(command, several_seeds=row.seeds > 1) if command.startswith(
                    "python -m repro run") else None
                reason = stale_reason(record, shown)
                if not record.get("code") and record.get("producer") is None:
                    record["_stale"] = UNCHECKED + (f"; and {reason}" if reason else "")
                elif reason:
                    record["_stale"] = f"STALE ({reason})"
                    problems.append(f"{Path(record['_path']).name}: stale: {reason}")
    return problems


def write_tables(results_dir: Path) -> list[Path]:
    """Regenerate every paper's page, its figures and the index from ``results_dir/runs``."""
    records = load_records(results_dir / "runs")
    problems = {record["_path"]: trace_problem(record) for record in records}
    mark_stale(records)
    return _write(results_dir, results_dir, records, problems)


def _write(results_dir: Path, out: Path, records: list[dict], problems: dict[str, str | None]) -> list[Path]:
    by_paper = defaultdict(list)
    for record in records:
        by_paper[record["paper"]].append(record)
    written = []
    for entry in all_papers():
        table_path = out / f"{entry.name}.md"
        claims = claims_figure(entry, by_paper, out / f"{entry.name}_claims.png")
        text = paper_table(entry, by_paper[entry.name], problems, by_paper, claims)
        if claims is not None:
            written.append(claims)
        figure = history_figure(entry, by_paper[entry.name], out / f"{entry.name}_validation.png")
        if figure is not None:
            text += f"\n![{entry.monitor[0]} per epoch]({figure.name})\n"
            written.append(figure)
        for figure in entry.figures:
            for caption, path in FIGURES[figure](entry, by_paper[entry.name], out):
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


def _rescore_one(path: Path, data_dir: str | None) -> str | None:
    try:
        _, differing = rescore(path, data_dir)
    except UserError as error:
        return f"{path.name}: cannot be re-scored: {error}"
    return f"{path.name}: re-scored from its predictions, {', '.join(differing)} differ from the record" if differing else None


def _one_meteor_per_worker() -> None:
    """In a re-scoring worker, one METEOR JVM for all the systems it scores. ``score_captions`` starts
    one per call, and METEOR spends about 10 s of CPU loading its paraphrase tables, most of what
    re-scoring a caption record costs. Each EVAL line carries its own statistics, so a kept METEOR scores
    exactly as a new one (tests/test_tables.py). Only this check's worker processes are changed."""
    start, kept = captions._meteor_or_reason, {}

    def reuse(use_java: bool):
        meteor = kept.get(use_java)
        if meteor is None or meteor[0] is None or meteor[0].meteor_p.poll() is not None:
            meteor = kept[use_java] = start(use_java)
        return meteor

    captions._meteor_or_reason = reuse


def rescore_problems(records: list[dict], data_dir: str | None) -> list[str]:
    """Every record with a predictions file, re-scored (in parallel worker processes, each keeping one
    METEOR JVM): a metric that differs is a problem. A real-data record whose dataset is not under the
    data root is skipped, and said so."""
    paths = []
    for record in records:
        path = Path(record["_path"])
        if not predictions_path(path).is_file():
            continue
        data_root, _ = resolve_data_dir(data_dir)
        if record.get("data_source") == "real" and not get_dataset(record["dataset"]).is_present(data_root):
            print(f"note: {path.name} not re-scored: {record['dataset']} is not under {data_root} (--data-dir)")
            continue
        paths.append(path)
    if len(paths) < 2:
        return [problem for problem in (_rescore_one(path, data_dir) for path in paths) if problem]
    with ProcessPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1), initializer=_one_meteor_per_worker) as pool:
        return [problem for problem in pool.map(_rescore_one, paths, [data_dir] * len(paths)) if problem]


def check_tables(results_dir: Path, data_dir: str | None = None) -> list[str]:
    """What ``repro table --check`` finds wrong: untraceable, stale or no longer re-scorable records, and
    stale generated files."""
    records = load_records(results_dir / "runs")
    problems = {record["_path"]: trace_problem(record) for record in records}
    found = [f"{Path(path).name}: {problem}" for path, problem in problems.items() if problem]
    found += mark_stale(records)
    found += rescore_problems(records, data_dir)
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
