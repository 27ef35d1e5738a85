"""Language-model corpora beyond PTB: WikiText-2/-103 (tokenized and raw) and your own text.

Generated fixtures in each real format (tests/wikitext_fixtures.py): the readers, the vocabulary rules,
``data prepare`` from a local zip, from HF datasets' cache and offline, smoke runs through the CLI on
each format (KN5, dynamic evaluation, ``repro sample``, the table), and bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_cache_dir
from test_bad_input import assert_one_line_error, nothing_in_results
from wikitext_fixtures import (
    WIKITEXT2_LINES,
    WIKITEXT103_LINES,
    wikitext_lines,
    wikitext_zip,
    write_text,
    write_wikitext,
)

from datamodules.language_modeling.text import LanguageModelCorpusSpec, LanguageModelDataModule, language_model_corpus
from repro.app.cli import main
from repro.errors import UserError
from repro.language_modeling import UNKNOWN

SMOKE = ["--preset", "smoke", "--set", "hidden_size=8", "--max-epochs", "1", "--no-progress", "--accelerator", "cpu",
         "--devices", "1"]


def datamodule(name: str, root: Path, **options) -> LanguageModelDataModule:
    return LanguageModelDataModule(language_model_corpus(name).open(root), batch_size=2, bptt=5, **options)


@pytest.fixture(scope="module")
def wikitext_root(tmp_path_factory) -> Path:
    """A data root holding WikiText-2 in both releases' layouts (the release's line counts)."""
    root = tmp_path_factory.mktemp("wikitext")
    write_wikitext(root / "wikitext-2", "tokens")
    write_wikitext(root / "wikitext-2-raw", "raw")
    return root


# --- reading --------------------------------------------------------------------------------------

def test_every_corpus_of_mikolov2010_is_read_through_the_registry():
    from repro.registry import get_paper

    for name in get_paper("mikolov2010").datasets:
        assert isinstance(language_model_corpus(name), LanguageModelCorpusSpec), name
    with pytest.raises(UserError, match="flickr8k: not a language-model corpus"):
        language_model_corpus("flickr8k")


def test_tokenized_wikitext_keeps_every_line_and_the_released_vocabulary(wikitext_root):
    data = datamodule("wikitext2", wikitext_root)
    lines = (wikitext_root / "wikitext-2" / "wiki.valid.tokens").read_text(encoding="utf-8").splitlines()
    # every line, blank or heading, is a sentence with its <eos> (pytorch/examples, Merity et al.'s counts)
    assert [len(data.sentences[split]) for split in ("train", "valid", "test")] == list(WIKITEXT2_LINES)
    assert data.token_count("valid") == sum(len(line.split()) + 1 for line in lines)
    vocabulary = data.vocabulary
    train_words = {w for s in data.sentences["train"] for w in s}
    assert set(vocabulary.words) == train_words | {"<eos>"}  # as released: nothing cut, <unk> is a word of the text
    assert vocabulary.unknown == UNKNOWN and {"@-@", "@,@", "@.@", "="} <= train_words


def test_raw_wikitext_takes_merity_cut_off_and_the_option_overrides_it(wikitext_root):
    data = datamodule("wikitext2-raw", wikitext_root)
    counts = {}
    for sentence in data.sentences["train"]:
        for word in sentence:
            counts[word] = counts.get(word, 0) + 1
    assert UNKNOWN not in counts  # the raw release has no <unk>: the cut-off makes it
    kept = {w for w, c in counts.items() if c >= 3}
    assert set(data.vocabulary.words) == kept | {"<eos>", UNKNOWN}
    assert data.vocabulary.counts[data.vocabulary.index(UNKNOWN)] == sum(c for c in counts.values() if c < 3)
    # the cut words are <unk> for the baseline too (it counts the words the RNN is scored on)
    assert all(w in data.vocabulary for s in data.sentences_in_vocabulary("train") for w in s)
    # every word kept: no <unk>, so a valid word training never saw cannot be scored
    with pytest.raises(UserError, match=r"wiki.valid.raw:\d+: word '\S+' is not in the training vocabulary"):
        datamodule("wikitext2-raw", wikitext_root, min_count=1).vocabulary
    assert len(datamodule("wikitext2-raw", wikitext_root, min_count=5).vocabulary) < len(data.vocabulary)


def test_own_text_skips_blank_lines_and_cuts_on_request(tmp_path, capsys):
    folder = write_text(tmp_path / "text")
    with pytest.raises(UserError, match=r"valid.txt:\d+: word 'zebra' is not in the training vocabulary .*min_count=2"):
        datamodule("text", folder).vocabulary
    data = datamodule("text", folder, min_count=2)
    assert not any(s == [] for s in data.sentences["train"])
    assert "DATA: skipped" in capsys.readouterr().out
    assert "zebra" not in data.vocabulary and "Name0" not in data.vocabulary and data.vocabulary.unknown == UNKNOWN
    assert data.vocabulary.index("zebra") == data.vocabulary.index(UNKNOWN)


def test_a_truncated_wikitext_file_is_named(tmp_path):
    write_wikitext(tmp_path / "wikitext-2", "tokens", lines=(100, 3760, 4358))
    with pytest.raises(UserError, match=r"wiki.train.tokens: 100 lines, expected 36,718 \(WikiText-2's .*truncated"):
        datamodule("wikitext2", tmp_path).sentences


# --- where the files come from --------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch):
    """No internet and no HF datasets cache, whatever the machine has."""
    def no_download(url, destination):
        raise OSError("offline (test)")
    monkeypatch.setattr("datamodules.language_modeling.wikitext.download", no_download)
    monkeypatch.setattr("datamodules.language_modeling.wikitext.hf_cached_lines", lambda config: (None, "no HF cache (test)"))


@pytest.mark.parametrize("name, top, suffix, lines", [("wikitext2-raw", "wikitext-2-raw", "raw", WIKITEXT2_LINES),
                                                      ("wikitext103", "wikitext-103", "tokens", WIKITEXT103_LINES)])
def test_prepare_from_a_local_zip_in_the_release_layout(name, top, suffix, lines, tmp_path, capsys, offline):
    archive = wikitext_zip(tmp_path / f"{top}-v1.zip", top, suffix, lines)
    assert main(["data", "prepare", name, "--archive", str(archive), "--data-dir", str(tmp_path / "root")]) == 0
    assert f"{name}: unpacked wiki.train.{suffix}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "root" / top).iterdir()) == sorted(f"wiki.{s}.{suffix}" for s in ("train", "valid", "test"))
    assert main(["data", "prepare", name, "--data-dir", str(tmp_path / "root")]) == 0  # nothing to do now
    assert "already prepared" in capsys.readouterr().out


def test_prepare_offline_says_which_file_goes_where(tmp_path, capsys, offline):
    assert main(["data", "prepare", "wikitext2", "--data-dir", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err,
                          r"wikitext2: could not download https://wikitext.smerity.com/wikitext-2-v1.zip .*--archive "
                          r"wikitext-2-v1.zip`, or put wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens \(the "
                          r"wikitext-2/ folder of wikitext-2-v1.zip\) in \S+/wikitext-2/")
    assert not (tmp_path / "wikitext-2").exists()
    assert main(["data", "prepare", "text", "--data-dir", str(tmp_path)]) == 2
    assert "put train.txt, valid.txt, test.txt" in capsys.readouterr().err


def test_data_list_names_the_official_sources(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "wikitext-2-v1.zip (4,475,746 bytes, md5 542ccefacc6c27f945fb54453812b3cd)" in out
    assert "wikitext-103-raw-v1.zip" in out and "https://huggingface.co/datasets/Salesforce/wikitext" in out


def test_hf_cached_copy_is_read_when_the_folder_is_missing(tmp_path, monkeypatch, capsys):
    """HF datasets' rows are the release's lines: written once as the release's files in the suite's cache."""
    rows = {split: wikitext_lines(count, seed) for seed, (split, count) in enumerate(zip(("train", "valid", "test"), WIKITEXT2_LINES))}
    asked = []
    monkeypatch.setattr("datamodules.language_modeling.wikitext.hf_cached_lines", lambda config: (asked.append(config) or rows, ""))
    data = datamodule("wikitext2", tmp_path / "no-data-here")
    assert data.token_count("test") == sum(len(line.split()) + 1 for line in rows["test"])
    assert asked == ["wikitext-2-v1"] and "reading HF datasets' cached copy (wikitext-2-v1)" in capsys.readouterr().out
    assert (Path(data.files.paths["train"]).parent / "wiki.test.tokens").is_file()
    datamodule("wikitext2", tmp_path / "no-data-here").sentences  # the second time from the written files
    assert asked == ["wikitext-2-v1"]


# --- smoke runs through the command line ------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory, wikitext_root):
    """One smoke run on each format (KN5 on): {dataset: record}, with the results root."""
    root = tmp_path_factory.mktemp("runs")
    text = write_text(root / "my-text")
    records = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.delenv("REPRO_RUN_ID", raising=False)
        for dataset, data_dir, extra in (("wikitext2", wikitext_root, []), ("wikitext2-raw", wikitext_root, []),
                                         ("text", text, ["--set", "min_count=2"])):
            assert main(["run", "mikolov2010", *SMOKE, *extra, "--data", dataset, "--data-dir", str(data_dir),
                         "--out", str(root / "out"), "--results", str(root / "results")]) == 0
            [path] = [p for p in (root / "results" / "runs").glob(f"*-{dataset}-*.json")]
            records[dataset] = json.loads(path.read_text())
    return records, root / "results"


@pytest.mark.parametrize("dataset", ["wikitext2", "wikitext2-raw", "text"])
def test_smoke_run_scores_rnn_dynamic_and_kn5(runs, dataset):
    record = runs[0][dataset]
    assert record["dataset"] == dataset and record["data_source"] == "real"
    metrics = record["metrics"]
    for key in ("test/ppl", "test/ppl_dynamic", "test/ppl_kn5", "val/ppl_kn5", "best_val/ppl"):
        assert 1.0 < metrics[key] < 1000, (key, metrics[key])
    assert metrics["test/ppl_dynamic"] != metrics["test/ppl"]  # dynamic evaluation updated the weights


def test_table_keeps_the_kn5_column_on_every_corpus(runs, monkeypatch):
    records, results = runs
    monkeypatch.setattr("repro.app.tables.trace_problem", lambda record: None)
    assert main(["table", "--results", str(results)]) == 0
    table = (results / "mikolov2010.md").read_text()
    for dataset, record in records.items():
        [row] = [line for line in table.splitlines() if line.startswith("| this suite") and f"| {dataset} |" in line
                 and "smoke" in line]
        assert f"{record['metrics']['test/ppl_kn5']:.1f}" in row


def test_sample_from_a_text_checkpoint(runs, capsys):
    record = runs[0]["text"]
    capsys.readouterr()
    assert main(["sample", "--ckpt", record["best_checkpoint"], "--sentences", "4", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # a sentence may be empty: an <eos> straight after an <eos>
    vocabulary = {"The", "the", "cat", "dog", "bird", "child", "farmer", "sees", "likes", "follows", "finds", ".", UNKNOWN}
    assert set(" ".join(lines).split()) <= vocabulary


# --- bad input: one line naming the file, exit 2, nothing written ---------------------------------------

BAD = [
    ("empty split", lambda t: (["text", write_text(t, valid="")]), r"\S*/valid.txt: file is empty"),
    ("only blank lines", lambda t: (["text", write_text(t, test="\n\n")]), r"\S*/test.txt: only blank lines \(2\)"),
    ("not UTF-8", lambda t: (["text", write_text(t, train=b"the cat\nthe \xe9t\xe9 dog\n")]),
     r"\S*/train.txt:2: not valid UTF-8"),
    ("nothing but <unk>", lambda t: (["text", write_text(t), "--set", "min_count=100000"]),
     r"\S*/train.txt \(min_count=100000\): no word is seen at least 100000 times .* nothing but <unk>"),
    ("unseen word without <unk>", lambda t: (["text", write_text(t)]),
     r"\S*/valid.txt:\d+: word 'zebra' is not in the training vocabulary"),
    ("missing file", lambda t: (["text", write_text(t, test=None)]), r"--data text: \S*/test.txt not found \(data root from --data-dir\)"),
    ("a wikitext file that is not UTF-8", lambda t: (["wikitext2", bad_wikitext(t)]),
     r"\S*/wikitext-2/wiki.valid.tokens:1: not valid UTF-8"),
    ("wikitext not there", lambda t: (["wikitext2", t]),
     r"wikitext2: \S*/wikitext-2/wiki.train.tokens not found, and no HF cache \(test\); run `python -m repro data "
     r"prepare wikitext2`, or put wiki.train.tokens"),
]


def bad_wikitext(root: Path) -> Path:
    folder = write_wikitext(root / "wikitext-2", "tokens", lines=(10, 2, 2))
    (folder / "wiki.valid.tokens").write_bytes(b" caf\xe9 \n \n")
    return root


@pytest.mark.parametrize("case, pattern", [pytest.param(case, pattern, id=name) for name, case, pattern in BAD])
@pytest.mark.usefixtures("fresh_cache")
def test_bad_corpus_is_one_line_naming_the_file(case, pattern, tmp_path, capsys, offline):
    dataset, data_dir, *extra = case(tmp_path / "data")
    results = tmp_path / "results"
    assert main(["run", "mikolov2010", *SMOKE, *extra, "--data", dataset, "--data-dir", str(data_dir),
                 "--out", str(tmp_path / "out"), "--results", str(results)]) == 2
    assert_one_line_error(capsys.readouterr().err, pattern)
    assert nothing_in_results(results) and not list(tmp_path.rglob("*.ckpt"))
