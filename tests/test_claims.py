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
