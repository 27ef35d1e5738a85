"""The prepared (memory-mapped) language-model text gives exactly what the list-of-sentences path gave.

``reference`` below is the path the suite had before text was prepared (sentences as lists of strings,
the vocabulary counted from them, the id stream as one int64 tensor cut into streams), kept here in a
few lines as the specification: vocabulary, token counts, the share of <unk>, every training batch for
1 and 2 processes and every evaluation batch must be identical, so every existing run record stays
valid. Checked on Mikolov's PTB (the shared copy), the agreement grammar and a WikiText-style text with
blank lines, a literal <eos>, a cut-off and words unseen in training.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from datamodules.catalog import get_dataset
from datamodules.language_modeling import prepared as prepared_module
from datamodules.language_modeling.ptb import ptb_files
from datamodules.language_modeling.text import LanguageModelDataModule, TextFiles, split_streams
from repro.errors import UserError
from repro.language_modeling import END_OF_SENTENCE, UNKNOWN
from repro.vocabulary import Vocabulary
from tests.conftest import shared_data, write_text_corpus

# --- the path before text was prepared, as a specification ---------------------------------------------


def reference(files: TextFiles, min_count: int):
    sentences = {}
    for split, path in files.paths.items():
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
        sentences[split] = [s for s in lines if s or files.blank_lines == "sentence"]
    counts = Counter(word for sentence in sentences["train"] for word in sentence)
    counts.pop(END_OF_SENTENCE, None)
    cut = sum(c for w, c in counts.items() if c < min_count and w != UNKNOWN)
    kept = Counter({w: c for w, c in counts.items() if c >= min_count and w != UNKNOWN})
    kept[END_OF_SENTENCE] = len(sentences["train"])
    if counts.get(UNKNOWN, 0) + cut:
        kept[UNKNOWN] = counts.get(UNKNOWN, 0) + cut
    vocabulary = Vocabulary.from_counts(kept, unknown=UNKNOWN if UNKNOWN in kept else None)

    def stream(split):
        end = vocabulary.index(END_OF_SENTENCE)
        ids = [end]
        for sentence in sentences[split]:
            ids += vocabulary.encode(sentence) + [end]
        return torch.tensor(ids)

    return SimpleNamespace(sentences=sentences, vocabulary=vocabulary, stream=stream)


def reference_train_batches(ref, batch_size, bptt, rank, world):
    inputs, targets = split_streams(ref.stream("train"), batch_size, pad_to_equal=False)
    mine = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
    inputs, targets = inputs[mine], targets[mine]
    return [(inputs[:, i:i + bptt], targets[:, i:i + bptt]) for i in range(0, inputs.shape[1], bptt)]


def reference_eval_batches(ref, split, bptt):
    inputs, targets = split_streams(ref.stream(split), 1, pad_to_equal=True)
    return [(inputs[:, i:i + bptt], targets[:, i:i + bptt]) for i in range(0, inputs.shape[1], bptt)]


def assert_same(files: TextFiles, min_count: int = 1, batch_size: int = 4, bptt: int = 7, eval_bptt: int = 50):
    ref = reference(files, min_count)
    for world in (1, 2):
        data = LanguageModelDataModule(files, batch_size=batch_size, bptt=bptt, eval_bptt=eval_bptt, min_count=min_count)
        data._rank_and_world = lambda world=world: (world - 1, world)
        got, want = data.vocabulary, ref.vocabulary
        assert (got.words, got.counts, got.unknown) == (want.words, want.counts, want.unknown)
        batches = list(data.train_dataloader())
        expected = reference_train_batches(ref, batch_size, bptt, world - 1, world)
        assert len(batches) == len(expected)
        for (x, y), (ex, ey) in zip(batches, expected):
            assert x.dtype == ex.dtype == torch.long and torch.equal(x, ex) and torch.equal(y, ey)
    for split, loader in (("valid", data.val_dataloader()), ("test", data.test_dataloader())):
        batches = list(loader)
        expected = reference_eval_batches(ref, split, eval_bptt)
        assert len(batches) == len(expected)
        assert all(torch.equal(x, ex) and torch.equal(y, ey) for (x, y), (ex, ey) in zip(batches, expected))
        words = sum(len(s) for s in ref.sentences[split])
        assert data.token_count(split) == words + len(ref.sentences[split])
        unknown = sum(1 for s in ref.sentences[split] for w in s if w == UNKNOWN or w not in ref.vocabulary)
        assert data.out_of_vocabulary(split) == unknown / max(words, 1)
        assert list(data.sentences[split]) == ref.sentences[split]
        assert [data.sentences[split][i] for i in (0, -1)] == [ref.sentences[split][0], ref.sentences[split][-1]]


def test_mikolov_ptb_gives_the_vocabulary_ids_and_batches_of_the_list_path():
    assert_same(ptb_files(shared_data("ptb")), batch_size=20, bptt=35, eval_bptt=400)


def test_agreement_grammar_gives_the_same_as_the_list_path(tmp_path):
    spec = get_dataset("agreement-grammar")
    assert_same(spec.open(tmp_path / "no-data-here"), batch_size=6, bptt=5)


@pytest.mark.parametrize("min_count", [1, 2])
def test_wikitext_style_text_gives_the_same_as_the_list_path(tmp_path, min_count):
    lines = {"train": ["the cat sat <eos> here", "", "= heading =", "the dog sat", "a <unk> ran", "", "cat dog cat"] * 9,
             "valid": ["the cat", "", "zebra sat"], "test": ["dog <unk> the", "", "", "cat"]}
    folder = write_text_corpus(tmp_path, lines)
    files = TextFiles("wiki-style", {s: folder / f"ptb.{s}.txt" for s in ("train", "valid", "test")},
                      blank_lines="sentence")
    assert_same(files, min_count=min_count, batch_size=4, bptt=3, eval_bptt=4)


def test_an_interrupted_preparation_leaves_nothing_and_the_next_run_prepares(tiny_corpus, monkeypatch, fresh_cache):
    files = ptb_files(tiny_corpus, check_standard_ptb=False)
    original = prepared_module.write_prepared_text

    def interrupted(folder, *args):
        original(folder, *args)
        raise KeyboardInterrupt  # after every file is written, before the rename

    monkeypatch.setattr(prepared_module, "write_prepared_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _ = LanguageModelDataModule(files).vocabulary
    assert [p.name for p in (fresh_cache / "prepared").iterdir() if not p.name.endswith((".lock", ".json"))] == []
    monkeypatch.setattr(prepared_module, "write_prepared_text", original)
    assert_same(files, batch_size=2, bptt=3)


def test_a_changed_file_is_prepared_again_and_a_bad_line_leaves_nothing(tiny_corpus, fresh_cache):
    files = ptb_files(tiny_corpus, check_standard_ptb=False)
    first = LanguageModelDataModule(files).prepared.folder
    assert LanguageModelDataModule(files).prepared.folder == first  # mapped again, not prepared again
    train = tiny_corpus / "ptb.train.txt"
    train.write_text(train.read_text() + "one more sentence\n")
    assert LanguageModelDataModule(files).prepared.folder != first
    train.write_text(train.read_text() + "\n")
    with pytest.raises(UserError, match=r"ptb.train.txt:\d+: empty line"):
        _ = LanguageModelDataModule(files).vocabulary
    folders = [p for p in (fresh_cache / "prepared").iterdir() if p.is_dir()]
    assert len(folders) == 2 and all((p / "meta.json").is_file() for p in folders)  # the two good texts, no staging
