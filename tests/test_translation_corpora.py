"""The translation corpora on the registry: Multi30k in any of its languages and test sets, Tatoeba,
`data prepare` for both (archive, download refused offline), and a corpus folder named from config.

The Multi30k fixtures are written in the official format and with the official file names of
multi30k/dataset's data/task1/raw/ (one sentence per line, gzipped; plain files are read too): train
and val in en, de, fr, cs; test_2016_flickr and test_2018_flickr in all four; test_2017_flickr and
test_2017_mscoco in en, de and fr only.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from datamodules.catalog import DATASETS, choose_dataset, get_dataset
from datamodules.translation.corpora import MULTI30K_FILES, MULTI30K_MD5, MULTI30K_SPLITS, MULTI30K_TEST_SETS
from datamodules.translation.parallel_text import ParallelTextSpec, line_aligned, parallel_text_spec
from repro.app.cli import main
from repro.errors import UserError
from repro.files import file_md5
from tests.conftest import shared_data

WORDS = {"en": ["a", "man", "dog", "runs", "on", "the", "grass"], "de": ["ein", "Mann", "Hund", "läuft", "auf", "dem", "Gras"],
         "fr": ["un", "homme", "chien", "court", "sur", "l'", "herbe"], "cs": ["muž", "pes", "běží", "na", "trávě", "malý", "velký"]}
SIZES = {"train": 12, "val": 3, "test_2016_flickr": 4, "test_2017_flickr": 5, "test_2017_mscoco": 2, "test_2018_flickr": 6}


def sentence(language: str, split: str, number: int) -> str:
    words = WORDS[language]
    return " ".join(words[(number + k) % len(words)] for k in range(3 + number % 4)) + " ."


def write_multi30k(folder: Path, languages=("en", "de", "fr", "cs"), plain: tuple[str, ...] = (),
                   leave_out: tuple[str, ...] = ()) -> Path:
    """Multi30k task 1 as in data/task1/raw/: ``<split>.<lang>.gz`` (``plain`` names are written unzipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, available in MULTI30K_SPLITS.items():
        for language in available:
            name = f"{split}.{language}"
            if language not in languages or name in leave_out:
                continue
            text = "".join(sentence(language, split, n) + "\n" for n in range(SIZES[split]))
            if name in plain:
                (folder / name).write_text(text, encoding="utf-8")
            else:
                with gzip.open(folder / f"{name}.gz", "wt", encoding="utf-8") as out:
                    out.write(text)
    return folder


def sizes(reader, source: str, target: str) -> dict[str, int]:
    return {split: len(pairs) for split, pairs in reader.read(source, target).splits.items()}


@pytest.fixture
def multi30k_root(tmp_path) -> Path:
    write_multi30k(tmp_path / "data" / "multi30k", plain=("train.de", "val.cs", "test_2018_flickr.en"))
    return tmp_path / "data"


def test_the_known_files_are_those_of_the_official_repository():
    # data/task1/raw/ of github.com/multi30k/dataset: 22 files, cs only in train, val, 2016 and 2018
    assert sorted(MULTI30K_FILES) == sorted(MULTI30K_MD5) and len(MULTI30K_FILES) == 22
    assert [name for name, languages in MULTI30K_TEST_SETS.items() if "cs" not in languages] == \
        ["test_2017_flickr", "test_2017_mscoco"]


@pytest.mark.parametrize("source, target", [("de", "en"), ("cs", "en"), ("en", "fr"), ("fr", "cs")])
def test_multi30k_reads_any_language_pair_plain_or_gzipped(multi30k_root, source, target):
    reader = parallel_text_spec("multi30k").open(multi30k_root, source, target)
    assert sizes(reader, source, target) == {"train": 12, "valid": 3, "test": 4}  # test_2016_flickr by default
    pair = reader.read(source, target).splits["train"][1]
    assert pair.source == sentence(source, "train", 1) and pair.target == sentence(target, "train", 1)


@pytest.mark.parametrize("test_set", list(MULTI30K_TEST_SETS))
def test_every_test_set_of_multi30k(multi30k_root, test_set):
    for source, target in (("de", "en"), ("cs", "en")):
        if "cs" in (source, target) and "cs" not in MULTI30K_TEST_SETS[test_set]:
            with pytest.raises(UserError, match=rf"--set test_set={test_set}: multi30k's {test_set} has no 'cs' side "
                                                rf"\(it exists in en, de, fr\); test sets with cs and en: "
                                                rf"test_2016_flickr, test_2018_flickr$"):
                parallel_text_spec("multi30k").open(multi30k_root, source, target, test_set)
            continue
        reader = parallel_text_spec("multi30k").open(multi30k_root, source, target, test_set)
        corpus = reader.read(source, target)
        assert len(corpus.splits["test"]) == SIZES[test_set]
        assert corpus.splits["test"][0].where.split(":")[0].rsplit("/", 1)[1].startswith(f"{test_set}.{source}")


def test_an_unknown_test_set_or_language_lists_what_exists(multi30k_root):
    spec = parallel_text_spec("multi30k")
    with pytest.raises(UserError, match=r"--set test_set=test_2019_flickr: multi30k has no such test set; its test "
                                        r"sets: test_2016_flickr, test_2017_flickr, test_2017_mscoco, test_2018_flickr"):
        spec.open(multi30k_root, "de", "en", "test_2019_flickr")
    with pytest.raises(UserError, match=r"unknown language pair ja-en for multi30k: it has any two of en, de, fr, cs"):
        spec.open(multi30k_root, "ja", "en")


def test_a_missing_file_of_the_chosen_pair_is_named_with_the_languages_present(tmp_path):
    root = tmp_path / "data"
    write_multi30k(root / "multi30k", leave_out=("test_2018_flickr.cs",))
    with pytest.raises(UserError, match=r"multi30k/test_2018_flickr.cs \(or .gz\) not found: no 'cs' side for the test "
                                        r"split; languages present for 'test_2018_flickr': de, en, fr"):
        parallel_text_spec("multi30k").open(root, "cs", "en", "test_2018_flickr")


def test_corpus_dir_reads_a_copy_elsewhere_and_says_so(tmp_path, capsys):
    write_multi30k(tmp_path / "data" / "my_multi30k_copy", languages=("en", "de"))
    elsewhere = write_multi30k(tmp_path / "elsewhere", languages=("en", "fr"))
    spec = parallel_text_spec("multi30k")
    assert not spec.is_present(tmp_path / "data")  # the registered folder, <root>/multi30k, is empty
    reader = spec.open(tmp_path / "data", "de", "en", "test_2017_mscoco", corpus_dir="my_multi30k_copy")
    assert sizes(reader, "de", "en")["test"] == 2
    assert "DATA: multi30k files from " in capsys.readouterr().out
    assert sizes(spec.open(tmp_path / "data", "en", "fr", corpus_dir=str(elsewhere)), "en", "fr")["train"] == 12
    with pytest.raises(UserError, match=r"--set corpus_dir=nowhere: \S*/data/nowhere is not a folder"):
        spec.open(tmp_path / "data", "de", "en", corpus_dir="nowhere")
    with pytest.raises(UserError, match=r"multi30k: \S*/data/multi30k not found; run `python -m repro data prepare "
                                        r"multi30k`, or name a copy elsewhere with --set corpus_dir=FOLDER"):
        spec.open(tmp_path / "data", "de", "en")


def test_data_auto_finds_multi30k_in_its_registered_folder_only(multi30k_root, tmp_path):
    papers_datasets = ("multi30k", "translation-sample")
    assert choose_dataset("auto", papers_datasets, multi30k_root, "--data-dir")[0].name == "multi30k"
    assert choose_dataset("auto", papers_datasets, tmp_path / "empty", "--data-dir")[0].name == "translation-sample"


def test_the_paper_asks_the_registry_for_the_reader_never_the_name(tmp_path, monkeypatch):
    """A corpus registered under a name no code knows is read by its own reader."""
    from papers.sutskever2014 import PRESETS, Sutskever2014Config
    from repro.config import resolve_config

    write_multi30k(tmp_path / "data" / "toy", languages=("en", "de"))
    monkeypatch.setitem(DATASETS, "toy", ParallelTextSpec(
        name="toy", description="a corpus only this test knows", folder="toy", required_files=("train.*",),
        reader=line_aligned("toy", ("train",), ("val",), ("en", "de")), languages=("en", "de"),
        test_sets={"test_2017_mscoco": ("en", "de")}))
    config = resolve_config(Sutskever2014Config, PRESETS, "smoke", ["source_language=de", "target_language=en"])
    data = get_dataset("toy").make_datamodule(config, tmp_path / "data")  # as `repro run` builds it
    assert [len(data.pairs[split]) for split in ("train", "valid", "test")] == [12, 3, 2]
    with pytest.raises(UserError, match="ptb: not a translation corpus"):
        parallel_text_spec("ptb")


# --- Tatoeba ------------------------------------------------------------------------------------

def write_fra_txt(path: Path, count: int = 400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"Sentence number {i}.\tPhrase numéro {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} (CK) & #{i + 1}"
             for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tatoeba_is_read_from_its_registered_folder_or_corpus_dir(tmp_path):
    write_fra_txt(tmp_path / "data" / "tatoeba" / "fra.txt")
    write_fra_txt(tmp_path / "data" / "tatoeba_eng_fra" / "fra.txt", 100)
    spec = parallel_text_spec("tatoeba")
    assert spec.is_present(tmp_path / "data")
    assert sum(sizes(spec.open(tmp_path / "data", "en", "fr"), "en", "fr").values()) == 400
    assert sum(sizes(spec.open(tmp_path / "data", "fr", "en", corpus_dir="tatoeba_eng_fra"), "fr", "en").values()) == 100
    with pytest.raises(UserError, match=r"--set test_set=test_2016_flickr: tatoeba has no such test set; its test sets: test"):
        spec.open(tmp_path / "data", "en", "fr", "test_2016_flickr")


# --- data prepare ---------------------------------------------------------------------------------

def github_archive(path: Path, source: Path) -> Path:
    """A zip laid out as GitHub's archive of multi30k/dataset, with other files of the repository beside."""
    top = "dataset-a3d2e0d26b56f3846f66a952536ffed4e401d05a"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(f"{top}/README.md", "Multi30k Data Repository\n")
        bundle.writestr(f"{top}/data/task1/tok/train.lc.norm.tok.en", "a man .\n")
        bundle.writestr(f"{top}/data/task2/raw/train.1.en.gz", gzip.compress(b"two men .\n"))
        bundle.writestr(f"{top}/data/task1/raw/", "")
        for file in sorted(source.iterdir()):
            bundle.write(file, f"{top}/data/task1/raw/{file.name}")
    return path


def test_prepare_multi30k_from_the_repository_archive(tmp_path, capsys):
    raw = write_multi30k(tmp_path / "raw", languages=("en", "de"))
    archive = github_archive(tmp_path / "dataset-master.zip", raw)
    assert main(["data", "prepare", "multi30k", "--archive", str(archive), "--data-dir", str(tmp_path / "root")]) == 0
    printed = capsys.readouterr().out
    assert "multi30k: unpacked 12 file(s) into " in printed and "train.1.en.gz" not in printed
    assert sorted(p.name for p in (tmp_path / "root" / "multi30k").iterdir()) == sorted(p.name for p in raw.iterdir())
    assert "differ from the files at https://github.com/multi30k/dataset commit a3d2e0d: " in printed  # not the real ones
    assert "not in the archive (only what a run asks for is needed): train.fr.gz" in printed
    reader = parallel_text_spec("multi30k").open(tmp_path / "root", "de", "en", "test_2017_flickr")
    assert sizes(reader, "de", "en") == {"train": 12, "valid": 3, "test": 5}


def test_prepare_multi30k_from_the_test_sets_tarball(tmp_path, capsys):
    """The repository's multi30k_test_sets_<hash>.tar.gz holds plain ./test_<year>_<set>.<lang> files."""
    archive = tmp_path / "multi30k_test_sets.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name in ("test_2017_flickr.de", "test_2017_flickr.en", "notes.txt"):
            data = b"ein Mann .\n"
            member = tarfile.TarInfo(f"./{name}")
            member.size = len(data)
            bundle.addfile(member, io.BytesIO(data))
    assert main(["data", "prepare", "multi30k", "--archive", str(archive), "--data-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "multi30k").iterdir()) == ["test_2017_flickr.de", "test_2017_flickr.en"]


def test_prepare_offline_says_in_one_line_which_files_go_where(tmp_path, offline, capsys):
    assert main(["data", "prepare", "multi30k", "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: multi30k: could not download https://raw.githubusercontent"
                                                       ".com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a"
                                                       "/data/task1/raw/train.en.gz")
    for words in ("{train,val,test_2016_flickr,test_2018_flickr}.{en,de,fr,cs}.gz", f"{tmp_path / 'multi30k'}/",
                  "{test_2017_flickr,test_2017_mscoco}.{en,de,fr}.gz",
                  "https://github.com/multi30k/dataset/archive/a3d2e0d26b56f3846f66a952536ffed4e401d05a.zip",
                  "`python -m repro data prepare multi30k --archive FILE.zip`"):
        assert words in error
    assert not (tmp_path / "multi30k").exists()
    assert main(["data", "prepare", "tatoeba", "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "could not download https://www.manythings.org/anki/fra-eng.zip" in error
    assert f"Put its fra.txt in {tmp_path / 'tatoeba'}/" in error and "--archive fra-eng.zip" in error


def test_prepare_tatoeba_from_manythings_zip(tmp_path, capsys):
    archive = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(write_fra_txt(tmp_path / "fra.txt"), "fra.txt")
        bundle.writestr("_about.txt", "** Info **\n")
    assert main(["data", "prepare", "tatoeba", "--archive", str(archive), "--data-dir", str(tmp_path / "root")]) == 0
    assert (tmp_path / "root" / "tatoeba" / "fra.txt").read_bytes() == (tmp_path / "fra.txt").read_bytes()
    assert choose_dataset("auto", ("wmt14", "tatoeba", "translation-sample"), tmp_path / "root", "x")[0].name == "tatoeba"


# --- the real files, when this machine has them -----------------------------------------------------

@pytest.mark.realdata
def test_real_multi30k_through_corpus_dir():
    folder = shared_data("multi30k_en_fr")  # this machine's copy: en and fr, test_2016_flickr only
    spec = parallel_text_spec("multi30k")
    reader = spec.open(folder.parent, "en", "fr", corpus_dir=folder.name)
    assert sizes(reader, "en", "fr") == {"train": 29000, "valid": 1014, "test": 1000}
    assert all(MULTI30K_MD5[p.name] == file_md5(p) for p in reader.files("en", "fr"))  # the official files
    with pytest.raises(UserError, match=r"test_2017_flickr.en \(or .gz\) not found: .*present for 'test_2017_flickr': none"):
        spec.open(folder.parent, "en", "fr", "test_2017_flickr", folder.name)
