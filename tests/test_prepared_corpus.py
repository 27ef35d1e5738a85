"""The prepared (memory-mapped) parallel corpus gives exactly what the list-of-strings path gave.

``reference`` below is the path the suite had before corpora were prepared (``tokenized_corpus`` with
its ``TokenizedPair`` lists, ``build_vocabulary`` over them, ``encode_source``, and the sampler sorting
a Python list), kept here in a few lines as the specification: vocabularies, token ids, items and
batches for a seed must be identical, so every existing run record stays valid. The embedded sample
is pinned by a digest of what the old code produced (vocabularies, 3000 training items, valid, the
first epoch's batches at batch size 64).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from datamodules.translation import prepared as prepared_module
from datamodules.translation.parallel_text import (
    ParallelFiles,
    ParallelTextDataModule,
    TatoebaPairs,
    parallel_text_spec,
)
from datamodules.translation.prepared import PreparedCorpus, corpus_key, prepare, prepared_folder
from datamodules.translation.sample import generate
from repro.errors import UserError
from repro.translation.text import BOS, EOS, SPECIALS, UNKNOWN, encode_source, tokenize
from repro.vocabulary import Vocabulary
from tests.test_parallel_text import STEMS, write_pair
from tests.test_translation_corpora import write_multi30k

SAMPLE_DIGEST = "e98d45d11433cc42b72258f2899ca231"  # the pre-memmap code's output on the embedded sample


# --- the path before corpora were prepared, as a specification -----------------------------------------

def reference(reader, source, target, lowercase=False, max_length=100, source_size=160000, target_size=80000,
              min_count=1, reverse=True):
    raw = reader.read(source, target)
    splits = {split: [(tokenize(p.source, source, lowercase), tokenize(p.target, target, lowercase),
                       p.target.lower() if lowercase else p.target) for p in pairs] for split, pairs in raw.splits.items()}
    splits["train"] = [p for p in splits["train"] if len(p[0]) <= max_length and len(p[1]) <= max_length]

    def vocabulary(sentences, size):
        counts = Counter(w for s in sentences for w in s)
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS), key=lambda w: (-counts[w], w))
        return Vocabulary.from_counts(Counter({w: counts[w] for w in kept[:size]}), specials=SPECIALS, unknown=UNKNOWN)

    vocabularies = (vocabulary([p[0] for p in splits["train"]], source_size),
                    vocabulary([p[1] for p in splits["train"]], target_size))
    items = {split: [(encode_source(s, vocabularies[0], reverse), vocabularies[1].encode(t), " ".join(t), text)
                     for s, t, text in pairs] for split, pairs in splits.items()}
    return vocabularies, items


def reference_batches(lengths, batch_size, shuffle, seed, epoch=0, rank=0, world_size=1):
    order = list(range(len(lengths)))
    generator = random.Random(seed + epoch)
    if shuffle:
        generator.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        generator.shuffle(batches)
    padding = math.ceil(len(batches) / world_size) * world_size - len(batches)
    return (batches + [batches[i % len(batches)] for i in range(padding)])[rank::world_size]


def assert_same(data: ParallelTextDataModule, expected) -> None:
    vocabularies, items = expected
    for got, want in zip((data.source_vocabulary, data.target_vocabulary), vocabularies):
        assert (got.words, list(got.counts)) == (want.words, list(want.counts))
    for split, wanted in items.items():
        dataset = data.dataset(split)
        got = [dataset[i] for i in range(len(dataset))]
        assert [(g["source"].tolist(), g["target"].tolist(), g["reference_tokens"], g["reference_text"]) for g in got] \
            == [tuple(w) for w in wanted], split
        assert all(str(g["source"].dtype) == str(g["target"].dtype) == "torch.int64" for g in got)
    lengths = [(len(s), len(t)) for s, t, _, _ in items["train"]]
    loader = data.train_dataloader()
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        assert list(loader.batch_sampler) == reference_batches(lengths, data.batch_size, True, data.seed, epoch)
    for rank in range(3):
        from datamodules.translation.parallel_text import BucketBatchSampler

        sampler = BucketBatchSampler(data.dataset("train").lengths(), 3, shuffle=True, seed=5, rank=rank, world_size=3)
        assert list(sampler) == reference_batches(lengths, 3, True, 5, 0, rank, 3)
    test_lengths = [(len(s), len(t)) for s, t, _, _ in items["test"]]
    assert list(data.test_dataloader().batch_sampler) == reference_batches(test_lengths, data.eval_batch_size, False, 0)
    batch = next(iter(data.train_dataloader()))
    target = data.target_vocabulary
    assert batch["target_input"][:, 0].tolist() == [target.index(BOS)] * len(batch["ids"])
    assert (batch["target_output"] == target.index(EOS)).sum() == len(batch["ids"])


@pytest.fixture
def corpora(tmp_path) -> dict[str, tuple]:
    simple = tmp_path / "parallel"
    write_pair(simple, "train", ["the black cat sleeps .", "a dog runs .", "the cat runs ."] * 4,
               ["le chat noir dort .", "un chien court .", "le chat court ."] * 4, gz=True)
    write_pair(simple, "valid", ["the dog sleeps ."], ["le chien dort ."])
    write_pair(simple, "test", ["a black dog sleeps .", "the cat ."], ["un chien noir dort .", "le chat ."])
    drops = tmp_path / "drops"
    write_pair(drops, "train", [("the cat " * (i % 5)) + f"runs {i % 3} ." for i in range(40)] + ["", "x"],
               [("le Chat " * (i % 4)) + f"court {i % 3} ." for i in range(40)] + ["y", ""])
    write_pair(drops, "valid", ["the dog sleeps ."], ["le chien dort ."])
    write_pair(drops, "test", ["a black dog sleeps .", "the cat ."], ["un chien noir dort .", "le chat ."])
    write_multi30k(tmp_path / "data" / "multi30k", plain=("train.de", "val.cs", "test_2018_flickr.en"))
    tatoeba = tmp_path / "fra.txt"
    tatoeba.write_text("\n".join([f"Sentence number {i}, isn't it?\tPhrase numéro {i}, n'est-ce pas ?\tCC-BY"
                                  for i in range(300)] + ["Go.\tVa !", ""]) + "\n", encoding="utf-8")
    multi30k = parallel_text_spec("multi30k")
    return {
        "simple": (ParallelFiles(simple, STEMS, "simple"), "en", "fr", {}),
        "simple, forward, lowercase, cut vocabulary": (ParallelFiles(simple, STEMS, "simple"), "en", "fr",
                                                      {"reverse": False, "lowercase": True, "source_size": 3}),
        "long pairs dropped, min_count 2": (ParallelFiles(drops, STEMS, "drops"), "en", "fr",
                                            {"max_length": 6, "min_count": 2, "lowercase": True}),
        "multi30k de-en": (multi30k.open(tmp_path / "data", "de", "en"), "de", "en", {"min_count": 2}),
        "multi30k en-fr mscoco": (multi30k.open(tmp_path / "data", "en", "fr", "test_2017_mscoco"), "en", "fr", {}),
        "tatoeba": (TatoebaPairs(tatoeba), "en", "fr", {}),
    }


CASES = ["simple", "simple, forward, lowercase, cut vocabulary", "long pairs dropped, min_count 2", "multi30k de-en",
         "multi30k en-fr mscoco", "tatoeba"]


@pytest.mark.parametrize("case", CASES)
def test_prepared_path_gives_the_vocabularies_ids_and_batches_of_the_list_path(corpora, case):
    reader, source, target, options = corpora[case]
    data = ParallelTextDataModule(
        reader, source, target, batch_size=3, reverse_source=options.get("reverse", True),
        lowercase=options.get("lowercase", False), source_vocabulary_size=options.get("source_size", 160000),
        min_count=options.get("min_count", 1), max_length=options.get("max_length", 100))
    assert_same(data, reference(reader, source, target, **options))


def test_embedded_sample_gives_what_the_list_path_gave():
    folder = generate()
    data = ParallelTextDataModule(ParallelFiles(folder, STEMS, "translation-sample"), batch_size=64,
                                  source_vocabulary_size=40)
    keys = ("ids", "source", "source_lengths", "target_input", "target_output", "reference_tokens", "reference_text")

    def items(split, count=None):
        dataset = data.dataset(split)
        return [[e["id"], e["source"].tolist(), e["target"].tolist(), e["reference_tokens"], e["reference_text"]]
                for e in (dataset[i] for i in range(count or len(dataset)))]

    batches = [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in b.items() if k in keys}
               for b in data.train_dataloader()]
    payload = [[[v.words, list(v.counts)] for v in (data.source_vocabulary, data.target_vocabulary)],
               items("train", 3000), items("valid"), batches]
    assert hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest() == SAMPLE_DIGEST


# --- preparing: once, atomically, keyed, on every core ---------------------------------------------------

@pytest.mark.usefixtures("fresh_cache")
def test_prepared_once_keyed_by_files_and_options_and_reused(corpora, capsys):
    reader = corpora["simple"][0]
    first = prepare(reader, "en", "fr", False)
    assert "tokenizing" in capsys.readouterr().out
    assert prepare(reader, "en", "fr", False) == first and "tokenizing" not in capsys.readouterr().out
    assert prepare(reader, "en", "fr", True) != first  # lowercase is part of the key
    assert prepare(reader, "fr", "en", False) != first  # so is the language pair
    corpus = PreparedCorpus(first)
    train = corpus.splits["train"]
    assert train.source_ids.dtype == np.int32 and isinstance(train.source_ids, np.memmap)
    assert [corpus.types["source"][i] for i in train.source(0)] == ["the", "black", "cat", "sleeps", "."]
    assert not list(first.parent.glob(".staging-*"))


@pytest.mark.usefixtures("fresh_cache")
def test_a_failed_preparation_leaves_nothing_that_is_read_later(tmp_path):
    folder = tmp_path / "bad"
    write_pair(folder, "train", ["a b", "c d", "e"], ["x", "y"])
    write_pair(folder, "valid", ["a"], ["x"])
    write_pair(folder, "test", ["a"], ["x"])
    reader = ParallelFiles(folder, STEMS, "bad")
    with pytest.raises(UserError, match=r"train\.en has 3 lines but .*train\.fr has 2"):
        prepare(reader, "en", "fr", False)
    key, _ = corpus_key(reader, "en", "fr", False)
    assert not prepared_folder(key).exists() and not list(prepared_folder(key).parent.glob(".staging-*"))


@pytest.mark.usefixtures("fresh_cache")
def test_two_workers_and_small_chunks_give_the_same_arrays_as_one(corpora, monkeypatch, tmp_path):
    reader = corpora["tatoeba"][0]
    monkeypatch.setattr(prepared_module, "CHUNK_PAIRS", 7)
    one = PreparedCorpus(prepare(reader, "en", "fr", False, workers=1, root=tmp_path / "one"))
    two = PreparedCorpus(prepare(reader, "en", "fr", False, workers=2, root=tmp_path / "two"))
    assert one.types == two.types and all((one.counts[s] == two.counts[s]).all() for s in one.counts)
    for split in ("train", "valid", "test"):
        a, b = one.splits[split], two.splits[split]
        for name in ("source_ids", "target_ids", "source_offsets", "target_offsets", "text_bytes", "lines"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (split, name)


def _prepare_in_child(reader, root: Path, log: Path, results) -> None:
    folder = prepare(reader, "en", "fr", False, workers=1, root=root,
                     announce=lambda message: log.open("a").write(message + "\n"))
    results.put(str(folder))


def test_processes_racing_to_prepare_make_it_once_and_map_the_same_files(corpora, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    reader, log, results = corpora["tatoeba"][0], tmp_path / "announced.txt", context.Queue()
    processes = [context.Process(target=_prepare_in_child, args=(reader, tmp_path / "prepared", log, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    folders = {results.get(timeout=5) for _ in processes}
    assert len(folders) == 1 and len(log.read_text().splitlines()) == 1  # one prepared, the other waited
    assert PreparedCorpus(Path(folders.pop())).meta["splits"]["train"]["pairs"] > 0
