"""Each paper's central claims, judged from the run records like the tables: the comparison that tests
a claim, on every dataset where both sides have runs, with its seeds and spread, and a verdict.

A side is one configuration (a table row: its runs, one per seed), never several configurations pooled.
When both sides come from the same runs (a model and the baseline each run scores beside it, or a
model's static and dynamic perplexity), each configuration is judged, paired: the spread is that of the
per-run differences. Otherwise like is compared with like, Welch-style (the standard error of a difference
of two means): on each dataset, each pair of configurations that depart from their presets in the same
way (both as their presets are, or both with the same ``--set``, such as a time cap lifted) is judged,
since two systems trained differently say little about each other; where no pair matches, the
configuration of each side with the most runs.

Verdicts:
- **holds here**: at least 3 runs a side, and the difference favours the claim by more than twice its
  standard error (about 95% confidence under a normal approximation);
- **contradicted here**: the same, the other way;
- **not shown at this scale**: fewer than 3 runs a side (the page says how many), or a difference within
  twice its standard error;
- **not tested**: no dataset has runs on both sides.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from repro.app.rows import rows_of
from repro.registry import Claim, PaperEntry, Side, get_paper

MIN_RUNS = 3


@dataclass
class Judgement:
    claim: Claim
    dataset: str | None
    verdict: str  # "holds here", "contradicted here", "not shown at this scale", "not tested"
    evidence: str
    real: bool = False  # judged on real data (else on an embedded sample)
    # what the verdict was drawn from (empty when not tested): each side's name, its row's preset and how
    # that row departs from it, its per-run values (in the same runs' order when paired), and the difference
    # in the claim's favour with its standard error
    labels: tuple[str, str] = ("", "")
    presets: tuple[str, str] = ("", "")
    departures: tuple[str, str] = ("", "")
    better: list[float] = field(default_factory=list)
    worse: list[float] = field(default_factory=list)
    paired: bool = False
    difference: float = math.nan
    error: float = math.inf


def _rows(side: Side, entry: PaperEntry, by_paper: dict[str, list[dict]]) -> dict[str, list[tuple[str, list[dict], str]]]:
    """dataset -> the rows (one configuration each: its runs, one per seed) this side takes, with a label and
    how the row departs from its preset."""
    paper = get_paper(side.paper) if side.paper else entry
    found: dict[str, list[tuple[str, list[dict], str]]] = {}
    for row in rows_of(paper, by_paper.get(paper.name, [])):
        if row.preset == "human-agreement" or (side.presets and row.preset not in side.presets):
            continue
        records = [record for record in row.records if record["metrics"].get(side.metric) is not None and all(
            (record.get("config") or {}).get(key) in value if isinstance(value, tuple)
            else (record.get("config") or {}).get(key) == value for key, value in side.config)]
        if records:
            label = f"preset `{row.preset}`" + (f" `{row.differences}`" if row.differences else "")
            found.setdefault(row.dataset, []).append((label, records, row.differences))
    return found


def _summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 run)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} runs)"


def _compare(claim: Claim, entry: PaperEntry, dataset: str, better: tuple[str, list[dict], str],
             worse: tuple[str, list[dict], str]) -> Judgement:
    (b_label, b_records, b_departures), (w_label, w_records, w_departures) = better, worse
    b = [r["metrics"][claim.better.metric] for r in b_records]
    w = [r["metrics"][claim.worse.metric] for r in w_records]
    sign = -1 if "ppl" in claim.better.metric else 1  # lower is better for a perplexity
    paired = [r["_path"] for r in b_records] == [r["_path"] for r in w_records]
    if paired:
        differences = [sign * (x - y) for x, y in zip(b, w)]
        difference = statistics.mean(differences)
        error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else math.inf
    else:
        difference = sign * (statistics.mean(b) - statistics.mean(w))
        error = math.sqrt(statistics.variance(b) / len(b) + statistics.variance(w) / len(w)) \
            if len(b) > 1 and len(w) > 1 else math.inf
    runs = min(len(b), len(w))
    if runs < MIN_RUNS:
        verdict, why = "not shown at this scale", f"{runs} run(s) a side; a verdict needs {MIN_RUNS}"
    elif difference > 2 * error:
        verdict, why = "holds here", "beyond twice its standard error"
    elif difference < -2 * error:
        verdict, why = "contradicted here", "beyond twice its standard error, the other way"
    else:
        verdict, why = "not shown at this scale", "within twice its standard error"
    shown_error = "" if math.isinf(error) else f" ± {error:.1f} (standard error{', paired' if paired else ''})"
    sides = (f"{claim.better.describe(entry.name)} {_summary(b)} vs {claim.worse.describe(entry.name)} {_summary(w)}"
             if paired else f"{claim.better.describe(entry.name)} ({b_label}) {_summary(b)} vs "
                            f"{claim.worse.describe(entry.name)} ({w_label}) {_summary(w)}")
    evidence = (f"{b_label + ': ' if paired else ''}{sides}; difference in the claim's favour {difference:+.1f}"
                f"{shown_error}: {why}")
    real = all(r.get("data_source") == "real" for r in b_records + w_records)
    return Judgement(claim, dataset, verdict, evidence, real,
                     (claim.better.describe(entry.name), claim.worse.describe(entry.name)),
                     (b_records[0]["preset"], w_records[0]["preset"]), (b_departures, w_departures),
                     b, w, paired, difference, error)


def judge(claim: Claim, entry: PaperEntry, by_paper: dict[str, list[dict]]) -> list[Judgement]:
    """One judgement per configuration where both sides come from the same runs (a model and its baseline);
    otherwise one per pair of configurations that depart from their presets alike, or where none do, one
    per dataset between each side's configuration with the most runs."""
    better_rows, worse_rows = _rows(claim.better, entry, by_paper), _rows(claim.worse, entry, by_paper)
    judgements = []
    for dataset in sorted(set(better_rows) & set(worse_rows)):
        same_runs = [(row, row) for row in better_rows[dataset] for other in worse_rows[dataset]
                     if [r["_path"] for r in row[1]] == [r["_path"] for r in other[1]]]
        alike = [(row, other) for row in better_rows[dataset] for other in worse_rows[dataset] if row[2] == other[2]]
        if same_runs:
            judgements += [_compare(claim, entry, dataset, b, w) for b, w in same_runs]
        elif alike:
            judgements += [_compare(claim, entry, dataset, b, w) for b, w in alike]
        else:
            most = lambda rows: max(rows, key=lambda row: len(row[1]))  # noqa: E731
            judgements.append(_compare(claim, entry, dataset, most(better_rows[dataset]), most(worse_rows[dataset])))
    if not judgements:
        judgements.append(Judgement(claim, None, "not tested", "no dataset has runs on both sides yet"))
    return judgements


def claims_section(entry: PaperEntry, by_paper: dict[str, list[dict]]) -> tuple[list[str], dict[str, int]]:
    """The page's opening section (Markdown lines) and the count of each claim's best verdict."""
    if not entry.claims:
        return [], {}
    lines = ["## The paper's claims, tested here", "",
             "Judged from the run records below (`repro.app.claims`): **holds here** needs at least 3 runs a side "
             "and a difference beyond twice its standard error; on the embedded samples a claim is tested on "
             "synthetic data, which says the code can show the effect, not that the paper's number holds.", "",
             "| claim | where the paper makes it | dataset | this suite's test | verdict |", "|---|---|---|---|---|"]
    order = ["holds here", "contradicted here", "not shown at this scale", "not tested"]
    counts: dict[str, int] = {}
    for claim in entry.claims:
        judgements = judge(claim, entry, by_paper)
        for judgement in judgements:
            evidence = judgement.evidence + (f". {claim.note}" if claim.note else "")
            lines.append(f"| {claim.statement} | {claim.source} | {judgement.dataset or ''} | {evidence} | "
                         f"**{judgement.verdict}** |")
        # a claim counts by its verdict on real data where it was tested there, else on a sample (said so)
        real = [j for j in judgements if j.real]
        best = min((j.verdict for j in real or judgements), key=order.index)
        key = best if real or best == "not tested" else f"{best} (on an embedded sample only)"
        counts[key] = counts.get(key, 0) + 1
    return lines + [""], counts


def count_text(counts: dict[str, int]) -> str:
    order = ["holds here", "contradicted here", "not shown at this scale", "not tested"]
    keys = sorted(counts, key=lambda key: (order.index(key.split(" (", 1)[0]), key))
    return ", ".join(f"{counts[key]} {key}" for key in keys) or "none declared"
