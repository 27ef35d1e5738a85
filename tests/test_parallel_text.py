"""Parallel text: readers, bad input, tokenization cache, source reversal, length-bucketed sharded batches."""

import gzip
from pathlib import Path

import pytest

from datamodules.translation.parallel_text import (
    BucketBatchSampler,
    ParallelFiles,
    ParallelTextDataModule,
    TatoebaPairs,
    parallel_text_spec,
    tatoeba_split,
)
from datamodules.translation.sample import generate
from repro.errors import UserError
from repro.translation.text import encode_source, reverse_source
from repro.vocabulary import Vocabulary
from tests.conftest import shared_data

STEMS = {"train": ("train",), "valid": ("valid",), "test": ("test",)}


def write_pair(folder: Path, stem: str, english: list[str], french: list[str], gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for language, lines in (("en", english), ("fr", french)):
        text = "".join(line + "\n" for line in lines)
        if gz:
            with gzip.open(folder / f"{stem}.{language}.gz", "wt", encoding="utf-8") as out:
                out.write(text)
        else:
            (folder / f"{stem}.{language}").write_text(text, encoding="utf-8")


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "parallel"
    write_pair(folder, "train", ["the black cat sleeps .", "a dog runs .", "the cat runs ."] * 4,
               ["le chat noir dort .", "un chien court .", "le chat court ."] * 4, gz=True)
    write_pair(folder, "valid", ["the dog sleeps ."], ["le chien dort ."])
    write_pair(folder, "test", ["a black dog sleeps .", "the cat ."], ["un chien noir dort .", "le chat ."])
    return folder


def datamodule(folder: Path, **options) -> ParallelTextDataModule:
    return ParallelTextDataModule(ParallelFiles(folder, STEMS, "test corpus"), **{"batch_size": 2, **options})


def test_reversal_reverses_the_source_words_never_the_target(corpus):
    assert reverse_source(["a", "b", "c"]) == ["c", "b", "a"]
    vocabulary = Vocabulary(["<pad>", "a", "b", "c"], [0, 1, 1, 1])
    assert encode_source(["a", "b", "c"], vocabulary, reverse=True) == [3, 2, 1]
    reversed_data, forward_data = datamodule(corpus, reverse_source=True), datamodule(corpus, reverse_source=False)
    source_words = reversed_data.source_vocabulary.decode
    target_words = reversed_data.target_vocabulary.decode
    example, forward = reversed_data.dataset("test")[0], forward_data.dataset("test")[0]
    assert source_words(example["source"].tolist()) == [".", "sleeps", "dog", "black", "a"]
    assert source_words(forward["source"].tolist()) == ["a", "black", "dog", "sleeps", "."]
    assert target_words(example["target"].tolist()) == ["un", "chien", "noir", "dort", "."]
    assert example["target"].tolist() == forward["target"].tolist()


def test_batches_put_the_decoder_input_one_step_behind_its_output(corpus):
    data = datamodule(corpus)
    batch = next(iter(data.test_dataloader()))
    vocabulary = data.target_vocabulary
    assert batch["target_input"][:, 0].tolist() == [vocabulary.index("<s>")] * 2
    for row in range(2):
        length = int((batch["target_output"][row] != 0).sum())
        assert batch["target_output"][row, length - 1] == vocabulary.index("</s>")
        assert batch["target_input"][row, 1:length].tolist() == batch["target_output"][row, :length - 1].tolist()


def test_bucketing_sampler_shards_by_rank_with_equal_counts_and_similar_lengths():
    lengths = [(n % 17 + 1, n % 13 + 1) for n in range(103)]
    shards = [list(BucketBatchSampler(lengths, 8, shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(BucketBatchSampler(lengths, 8, True, world_size=3))
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(103))  # every sentence on some rank; repeats only pad the last rank
    assert len(seen) - 103 < 8 * 3
    for shard in shards:  # sorted by length before cutting: a batch spans few lengths
        assert all(max(lengths[i][0] for i in b) - min(lengths[i][0] for i in b) <= 2 for b in shard)
    single = BucketBatchSampler(lengths, 8, shuffle=True, seed=3)
    first = list(single)
    assert list(BucketBatchSampler(lengths, 8, shuffle=True, seed=3)) == first  # reproducible
    single.set_epoch(1)
    assert list(single) != first  # another order every epoch
    assert sorted(i for b in first for i in b) == list(range(103))


def test_files_with_different_line_counts_name_both_files_and_counts(tmp_path):
    folder = tmp_path / "bad"
    write_pair(folder, "train", ["a", "b", "c"], ["x", "y"])
    write_pair(folder, "valid", ["a"], ["x"])
    write_pair(folder, "test", ["a"], ["x"])
    with pytest.raises(UserError, match=r"train\.en has 3 lines but .*train\.fr has 2"):
        datamodule(folder).pairs


def test_empty_lines_are_counted_skipped_and_said_once(tmp_path, capsys):
    folder = tmp_path / "gaps"
    write_pair(folder, "train", ["a b", "", "c d", "e"], ["x y", "z", "", "w"])
    write_pair(folder, "valid", ["a"], ["x"])
    write_pair(folder, "test", ["a"], ["x"])
    data = datamodule(folder)
    assert len(data.pairs["train"]) == 2
    output = capsys.readouterr().out
    assert output.count("skipped 2 sentence pair(s) with an empty side") == 1
    assert "train.en:2" in output


def test_evaluation_source_longer_than_max_length_is_an_error_naming_its_line(corpus):
    with pytest.raises(UserError, match=r"test\.en:1: source sentence of 5 tokens is longer than max_length=4"):
        datamodule(corpus, max_length=4).pairs


def test_unknown_language_pair_says_which_pairs_exist(corpus, tmp_path):
    with pytest.raises(UserError, match="no 'de' side .*languages present for 'train': en, fr"):
        datamodule(corpus, source_language="de").pairs
    with pytest.raises(UserError, match="unknown language pair de-fr for tatoeba: it has en-fr and fr-en"):
        TatoebaPairs(tmp_path / "fra.txt").read("de", "fr")
    with pytest.raises(UserError, match="unknown language pair en-ja for multi30k: it has any two of en, de, fr, cs"):
        parallel_text_spec("multi30k").open(tmp_path, "en", "ja")


def test_tatoeba_split_is_fixed_by_the_english_sentence(tmp_path):
    # the documented rule, pinned: md5 of the English sentence mod 100
    assert [tatoeba_split(s) for s in ("Go.", "Run!", "I see.", "Hello!")] == \
        [tatoeba_split(s) for s in ("Go.", "Run!", "I see.", "Hello!")]
    splits = [tatoeba_split(f"Sentence number {i}.") for i in range(4000)]
    assert 0.01 < splits.count("test") / 4000 < 0.03 and 0.01 < splits.count("valid") / 4000 < 0.03
    path = tmp_path / "fra.txt"
    lines = [f"Sentence number {i}.\tPhrase numéro {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org" for i in range(300)]
    lines += ["Sentence number 7.\tAutre traduction 7.", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = TatoebaPairs(path).read("en", "fr")
    assert corpus.skipped_empty == 1
    for split, pairs in corpus.splits.items():
        assert all(tatoeba_split(p.source) == split for p in pairs)
    sevens = [(split, p.target) for split, pairs in corpus.splits.items() for p in pairs if p.source == "Sentence number 7."]
    assert len(sevens) == 2 and sevens[0][0] == sevens[1][0]  # both translations in the same split
    french_first = TatoebaPairs(path).read("fr", "en")
    assert french_first.splits["train"][0].target.startswith("Sentence number")


@pytest.mark.usefixtures("fresh_cache")
def test_tokenized_corpus_is_cached_by_file_checksum(corpus, capsys):
    datamodule(corpus).pairs
    assert "tokenizing" in capsys.readouterr().out
    again = datamodule(corpus)
    assert [p.source for p in again.pairs["train"]][:1] == [["the", "black", "cat", "sleeps", "."]]
    assert "tokenizing" not in capsys.readouterr().out
    write_pair(corpus, "test", ["a cat ."], ["un chat ."])  # changed file: tokenized again
    datamodule(corpus).pairs
    assert "tokenizing" in capsys.readouterr().out


def test_vocabulary_cut_offs_map_the_rest_to_unknown(corpus):
    data = datamodule(corpus, source_vocabulary_size=3, min_count=1)
    assert len(data.source_vocabulary) == 4 + 3  # the specials, then the 3 most frequent words
    assert data.source_vocabulary.decode(data.dataset("test")[0]["source"].tolist()).count("<unk>") >= 1


def test_embedded_sample_is_deterministic_parallel_files(tmp_path):
    first, second = generate(tmp_path / "a"), generate(tmp_path / "b")
    for name in ("train.en", "train.fr", "test.en"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    english = (first / "train.en").read_text().splitlines()
    french = (first / "train.fr").read_text().splitlines()
    assert len(english) == len(french) == 12000
    assert max(len(line.split()) for line in english) > 30  # long sentences, where reversal matters


@pytest.mark.realdata
def test_real_tatoeba_through_corpus_dir():
    folder = shared_data("tatoeba_eng_fra")  # this machine's copy of manythings.org's fra.txt
    corpus = parallel_text_spec("tatoeba").open(folder.parent, "en", "fr", corpus_dir=folder.name).read("en", "fr")
    assert sum(len(pairs) for pairs in corpus.splits.values()) + corpus.skipped_empty == 142787
    assert 0.015 < len(corpus.splits["test"]) / 142787 < 0.025
