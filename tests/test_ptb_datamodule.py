import io
import tarfile

import pytest
import torch

from datamodules.catalog import choose_dataset
from datamodules.language_modeling.ptb import PennTreebankDataModule, prepare_ptb
from datamodules.language_modeling.text import split_streams
from repro.errors import UserError
from repro.language_modeling import IGNORE_INDEX
from tests.conftest import shared_data, write_text_corpus


def test_reads_the_format_and_counts_end_of_sentence(tiny_corpus):
    data = PennTreebankDataModule(tiny_corpus, batch_size=2, bptt=3, check_standard_ptb=False)
    assert "<eos>" in data.vocabulary and data.vocabulary.unknown == "<unk>"
    assert data.token_count("test") == 6 + 1 + 4 + 1
    # an unseen test word maps to <unk>
    assert data.vocabulary.index("zebra") == data.vocabulary.index("<unk>")


def test_every_evaluation_word_is_scored_once_whatever_the_process_count(tiny_corpus):
    ids = torch.arange(23)
    for processes in (1, 2, 3):
        inputs, targets = split_streams(ids, processes, pad_to_equal=True)
        scored = targets[targets != IGNORE_INDEX]
        assert sorted(scored.tolist()) == list(range(1, 23))
        assert inputs.shape == targets.shape


def test_training_streams_are_contiguous(tiny_corpus):
    data = PennTreebankDataModule(tiny_corpus, batch_size=2, bptt=4, check_standard_ptb=False)
    batches = list(data.train_dataloader())
    inputs = torch.cat([b[0] for b in batches], dim=1)
    targets = torch.cat([b[1] for b in batches], dim=1)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # each stream's next input is its last target
    assert all(b[0].shape[0] == 2 for b in batches)


@pytest.mark.parametrize("content, message", [
    (b" the cat \n\n a dog \n", "ptb.train.txt:2: empty line"),
    (b" the cat \n a \xff dog \n", "ptb.train.txt:2: not valid UTF-8"),
    (b" the\tcat \n", "ptb.train.txt:1: tab character"),
    (b"", "ptb.train.txt: file is empty"),
])
def test_bad_lines_name_file_and_line(tiny_corpus, content, message):
    (tiny_corpus / "ptb.train.txt").write_bytes(content)
    with pytest.raises(UserError, match=message):
        PennTreebankDataModule(tiny_corpus, check_standard_ptb=False).vocabulary


def test_missing_file_is_named(tiny_corpus):
    (tiny_corpus / "ptb.valid.txt").unlink()
    with pytest.raises(UserError, match="ptb.valid.txt: file not found"):
        PennTreebankDataModule(tiny_corpus, check_standard_ptb=False).vocabulary


def test_a_truncated_ptb_file_says_what_was_expected(tmp_path):
    folder = write_text_corpus(tmp_path / "ptb", {"train": ["a b"] * 10, "valid": ["a"], "test": ["b"]})
    with pytest.raises(UserError, match=r"ptb.train.txt: 10 lines / 20 words, expected 42068 lines / 887521 words"):
        PennTreebankDataModule(folder).vocabulary


def test_words_outside_the_vocabulary_without_unk_are_an_error(tmp_path):
    folder = write_text_corpus(tmp_path / "c", {"train": ["a b"], "valid": ["a c"], "test": ["a"]})
    with pytest.raises(UserError, match=r"ptb.valid.txt:1: word 'c' is not in the training vocabulary"):
        PennTreebankDataModule(folder, check_standard_ptb=False).vocabulary


def test_data_auto_falls_back_to_the_sample_loudly(tmp_path):
    spec, message = choose_dataset("auto", ("ptb", "agreement-grammar"), tmp_path, "--data-dir")
    assert spec.name == "agreement-grammar" and "EMBEDDED SAMPLE" in message
    with pytest.raises(UserError, match="--data ptb: .*ptb.train.txt not found"):
        choose_dataset("ptb", ("ptb", "agreement-grammar"), tmp_path, "--data-dir")


def test_prepare_rejects_an_archive_with_foreign_files(tmp_path):
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
            data = b" not the real file \n"
            member = tarfile.TarInfo(f"./simple-examples/data/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(UserError, match="has md5 .* expected"):
        prepare_ptb(tmp_path / "root", archive)
    with pytest.raises(UserError, match="not a readable tar archive"):
        (tmp_path / "junk.tgz").write_bytes(b"junk")
        prepare_ptb(tmp_path / "root", tmp_path / "junk.tgz")


@pytest.mark.realdata
def test_prepare_from_a_local_archive_and_read_real_ptb(tmp_path):
    real = shared_data("ptb")
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
            tar.add(real / name, arcname=f"./simple-examples/data/{name}")
    prepare_ptb(tmp_path / "root", archive)
    data = PennTreebankDataModule(tmp_path / "root" / "ptb")
    assert len(data.vocabulary) == 10000
    assert data.token_count("test") == 78669 + 3761
