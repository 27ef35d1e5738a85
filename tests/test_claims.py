"""The papers' claims are judged from records: seeds, spread, and which verdict follows."""

from __future__ import annotations

from repro.app.claims import claims_section, judge
from repro.registry import get_paper


def record(paper: str, seed: int, metrics: dict, preset: str = "cpu", **config) -> dict:
    return {"paper": paper, "preset": preset, "dataset": "flickr8k", "data_source": "real", "_path": f"{paper}-{preset}-{seed}",
            "finished_at": f"2026-01-0{seed}", "config": {"seed": seed, **config}, "metrics": metrics}


def verdicts(paper: str, records: list[dict], claim: int = 0) -> list[str]:
    entry = get_paper(paper)
    by_paper = {}
    for item in records:
        by_paper.setdefault(item["paper"], []).append(item)
    return [judgement.verdict for judgement in judge(entry.claims[claim], entry, by_paper)]


def test_a_paired_claim_holds_only_beyond_twice_its_standard_error_with_three_runs():
    beats = [record("vinyals2014", s, {"test/bleu_4": 15 + s / 10, "test/bleu_4@nearest-neighbour": 10.0}) for s in (1, 2, 3)]
    assert verdicts("vinyals2014", beats) == ["holds here"]
    assert verdicts("vinyals2014", beats[:2]) == ["not shown at this scale"]  # two seeds: no verdict
    noisy = [record("vinyals2014", s, {"test/bleu_4": 10 + d, "test/bleu_4@nearest-neighbour": 10.0})
             for s, d in ((1, 3), (2, -2.5), (3, 0.1))]
    assert verdicts("vinyals2014", noisy) == ["not shown at this scale"]
    loses = [record("vinyals2014", s, {"test/bleu_4": 5 + s / 10, "test/bleu_4@nearest-neighbour": 10.0}) for s in (1, 2, 3)]
    assert verdicts("vinyals2014", loses) == ["contradicted here"]


def test_an_unpaired_claim_compares_one_configuration_with_another_and_across_papers():
    soft = [record("xu2015", s, {"test/bleu_4": 17 + s / 10}, attention="soft") for s in (1, 2, 3)]
    nic = [record("vinyals2014", s, {"test/bleu_4": 15 + s / 10}) for s in (1, 2, 3)]
    assert verdicts("xu2015", soft + nic) == ["holds here"]
    hard = [record("xu2015", s, {"test/bleu_4": 16 + s / 10}, preset="cpu-hard", attention="hard") for s in (1, 2, 3)]
    assert verdicts("xu2015", soft + hard, claim=1) == ["contradicted here"]


def test_a_claim_without_runs_on_both_sides_is_not_tested_and_the_overview_counts_verdicts():
    entry = get_paper("xu2015")
    lines, counts = claims_section(entry, {})
    assert counts == {"not tested": len(entry.claims)} and any("**not tested**" in line for line in lines)


def test_an_unpaired_claim_compares_systems_trained_alike():
    """A soft-attention row without the time cap is judged against Show and Tell without it, and the capped
    rows against each other, not the best-seeded row of one regime against the other's."""
    uncapped = {"max_time_minutes": None}
    soft = [record("xu2015", s, {"test/bleu_4": 17 + s / 10}, attention="soft") for s in (1, 2, 3)]
    nic = [record("vinyals2014", s, {"test/bleu_4": 15 + s / 10}) for s in (1, 2, 3)]
    soft_uncapped = [record("xu2015", s, {"test/bleu_4": 14 + s / 10}, attention="soft", **uncapped)
                     for s in (1, 2, 3, 4, 5)]
    nic_uncapped = [record("vinyals2014", s, {"test/bleu_4": 16 + s / 10}, **uncapped) for s in (1, 2, 3, 4, 5)]
    entry = get_paper("xu2015")
    by_paper = {"xu2015": soft + soft_uncapped, "vinyals2014": nic + nic_uncapped}
    judgements = judge(entry.claims[0], entry, by_paper)
    assert [j.verdict for j in judgements] == ["holds here", "contradicted here"]
    assert "max_time_minutes=None" not in judgements[0].evidence and "(5 runs)" in judgements[1].evidence
    assert judgements[1].evidence.count("max_time_minutes=None") == 2
    # a regime only one side has is not compared with the other side's other regime while a pair matches
    assert [j.verdict for j in judge(entry.claims[0], entry, {"xu2015": soft + soft_uncapped, "vinyals2014": nic})] \
        == ["holds here"]


def test_the_claims_figure_plots_every_run_a_verdict_rests_on(tmp_path, monkeypatch):
    """One panel per comparison with at least 2 runs a side, whose dots are the runs' own values and whose
    title carries the verdict; a redraw is the same figure (its digest), and no comparison, no figure."""
    import repro.app.figures as figures

    soft = [record("xu2015", s, {"test/bleu_4": 17 + s / 10}, attention="soft") for s in (1, 2, 3)]
    nic = [record("vinyals2014", s, {"test/bleu_4": 15 + s / 10}) for s in (1, 2)]
    hard = [record("xu2015", 1, {"test/bleu_4": 16.0}, preset="cpu-hard", attention="hard")]  # 1 run: no panel
    entry, by_paper = get_paper("xu2015"), {"xu2015": soft + hard, "vinyals2014": nic}
    drawn = []
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: drawn.append(figure) or save(figure, path))
    path = figures.claims_figure(entry, by_paper, tmp_path / "xu2015_claims.png")
    panels = [axis for axis in drawn[0].get_axes() if axis.get_lines()]
    assert len(panels) == 1 and "not shown at this scale" in panels[0].get_title()
    plotted = sorted(float(y) for line in panels[0].get_lines() if line.get_label().startswith("_runs")
                     for y in line.get_ydata())
    assert plotted == sorted([17.1, 17.2, 17.3, 15.1, 15.2])
    again = figures.claims_figure(entry, by_paper, tmp_path / "again.png")
    assert figures.stored_digest(path) == figures.stored_digest(again) is not None
    assert figures.claims_figure(entry, {"xu2015": hard, "vinyals2014": nic}, tmp_path / "none.png") is None
