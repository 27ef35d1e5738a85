"""Installing beside a cluster's own PyTorch: pyproject.toml names ranges, constraints.txt the tested pins.

An exact pin of torch or torchvision in the dependencies would make ``pip install -e .`` replace the
CUDA build an environment already holds (or fail); the versions this project tests with live in
constraints.txt instead, one exact pin per package that pyproject.toml names, and ``repro table``
notes a run made with other versions.
"""

import json
import re
from importlib import metadata
from pathlib import Path

import pytest

from repro.app import records, tables

ROOT = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(requirement: str) -> tuple[str, str]:
    """A requirement's canonical name and its version specifiers (extras and markers dropped)."""
    requirement = requirement.split(";", 1)[0].strip()
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
    rest = re.sub(r"^\[[^\]]*\]", "", requirement[len(name):].strip()).strip()
    return canonical(name), rest


def declared() -> tuple[list[str], list[str]]:
    """This checkout's dependencies and test extra, from pyproject.toml (the installed ``repro``
    distribution may be another checkout's, e.g. an editable install of the main one)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["dependencies"], project["optional-dependencies"]["test"]


def installed_from_this_checkout() -> metadata.Distribution | None:
    """The installed ``repro`` distribution that pip made from this checkout, if any (not the
    ``repro.egg-info`` a build leaves in the checkout, which sys.path may find first)."""
    for distribution in metadata.distributions(name="repro"):
        url = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
        if url.startswith("file://") and Path(url[len("file://"):]).resolve() == ROOT:
            return distribution
    return None


def assert_torch_not_pinned(requirements: list[str]) -> None:
    names = {}
    for requirement in requirements:
        name, specifiers = split(requirement)
        names[name] = specifiers
        if name in ("torch", "torchvision"):
            assert "==" not in specifiers and "===" not in specifiers, (
                f"{requirement!r} pins {name} exactly: installing would replace an environment's own PyTorch; "
                f"name a range here and the tested version in constraints.txt")
    assert names.get("torch", "").startswith(">="), "torch should be named with a lower bound"
    assert names.get("torchvision", "").startswith(">="), "torchvision should be named with a lower bound"


def test_pyproject_names_ranges_of_torch_and_torchvision_not_exact_pins():
    dependencies, _ = declared()
    assert_torch_not_pinned(dependencies)


def test_installed_metadata_names_ranges_of_torch_and_torchvision():
    distribution = installed_from_this_checkout()
    if distribution is None:
        pytest.skip("the installed repro distribution is another checkout's; pyproject.toml is checked above")
    requires = [r for r in distribution.requires or [] if "extra ==" not in r]
    assert_torch_not_pinned(requires)


def test_every_constraint_is_an_exact_pin_of_a_declared_package_and_every_one_is_pinned():
    dependencies, test_extra = declared()
    named = {split(requirement)[0] for requirement in dependencies + test_extra}
    lines = [line.strip() for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()]
    pinned = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!_-]*)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin name==version"
        assert canonical(match.group(1)) in named, f"constraints.txt pins {match.group(1)}, which pyproject.toml does not name"
        pinned.append(canonical(match.group(1)))
    assert len(pinned) == len(set(pinned)), "constraints.txt pins a package twice"
    assert set(pinned) == named, f"not pinned in constraints.txt: {sorted(named - set(pinned))}"
    assert set(records.tested_versions(ROOT / "constraints.txt")) == named  # what `repro table` compares with


def test_tested_versions_are_read_from_the_constraints_file_and_empty_without_one(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# tested\ntorch==2.14.1  # the build machines' release\nEfficientNet_Lite-PyTorch==0.1.0\n\n"
                           "numpy>=1.24\n")
    assert records.tested_versions(constraints) == {"torch": "2.14.1", "efficientnet-lite-pytorch": "0.1.0"}
    assert records.tested_versions(tmp_path / "missing.txt") == {}


def sample_record(versions: dict, seed: int = 1) -> dict:
    return {"paper": "mikolov2010", "preset": "paper", "dataset": "ptb", "data_source": "real",
            "_path": f"results/runs/r{seed}.json", "config": {"seed": seed}, "metrics": {"test/ppl": 130.0 + seed},
            "finished_at": "2026-12-01T00:00:00+00:00", "epochs": 3, "versions": versions}


def test_a_table_row_notes_library_versions_other_than_the_tested_ones(tmp_path, monkeypatch):
    from repro.registry import get_paper

    (tmp_path / "constraints.txt").write_text("torch==2.14.1\nnumpy==2.4.6\nlightning==2.6.6\n")
    monkeypatch.setattr(records, "source_root", lambda: tmp_path)
    entry = get_paper("mikolov2010")
    tested = {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.4.6", "lightning": "2.6.6"}

    def row_of(*versions):
        page = tables.paper_table(entry, [sample_record(v, seed) for seed, v in enumerate(versions, 1)], {})
        return next(line for line in page.splitlines() if line.startswith("| this suite"))

    assert "ran with" not in row_of(tested)
    assert "ran with" not in row_of({**tested, "torch": "2.14.1+cu121"})  # another build of the tested release
    assert "ran with" not in row_of({"torch": None}, {})  # nothing recorded to compare
    line = row_of(tested, {**tested, "torch": "2.13.0", "numpy": "2.3.0"})
    assert "; ran with torch 2.13.0 (tested: 2.14.1), numpy 2.3.0 (tested: 2.4.6) |" in line
    # without a constraints file (an installed wheel) the table shows nothing extra
    (tmp_path / "constraints.txt").unlink()
    assert "ran with" not in row_of({**tested, "torch": "2.13.0"})
