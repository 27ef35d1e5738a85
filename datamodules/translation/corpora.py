"""The translation corpora the suite knows: where each comes from, its files, and how to prepare it.

Each registers a ``ParallelTextSpec`` (``datamodules.translation.parallel_text``): its reader, its languages and
its test sets. ``python -m repro data prepare NAME`` puts the files into the registered folder under
the data root (downloading them, or unpacking a local ``--archive``, or saying in one line which files
go where); ``--set corpus_dir=FOLDER`` reads a copy that sits elsewhere.

- ``multi30k``: Multi30k task 1 (Elliott et al. 2016, W16-3210; French and the 2017 test sets Elliott
  et al. 2017, W17-4718; Czech and test_2018_flickr Barrault et al. 2018), English descriptions of
  Flickr30k images with translations into German, French and Czech, in ``<data root>/multi30k/`` as
  in the official repository's ``data/task1/raw/`` (github.com/multi30k/dataset, read at commit
  a3d2e0d): ``train`` (29,000) and ``val`` (1,014) in en, de, fr and cs; test sets
  ``test_2016_flickr`` (1,000, all four), ``test_2017_flickr`` (1,000) and ``test_2017_mscoco``
  (461) in en, de and fr only (no Czech), ``test_2018_flickr`` (1,071, all four); each
  ``<split>.<language>.gz``, one sentence per line.
- ``tatoeba``: manythings.org's ``fra-eng.zip`` (Tatoeba sentence pairs), ``<data root>/tatoeba/fra.txt``;
  split by the md5 of the English sentence (``datamodules.translation.parallel_text.tatoeba_split``).
- ``wmt14``: WMT'14 English-French, the paper's data, in ``<data root>/wmt14/``.
- ``parallel``: your own line-aligned corpus, ``<data root>/parallel/{train,valid,test}.<language>``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from datamodules.catalog import Source, download, register_dataset, unzip
from datamodules.translation.parallel_text import ParallelTextSpec, TatoebaPairs, line_aligned
from repro.errors import UserError
from repro.files import file_md5

# --- Multi30k -----------------------------------------------------------------------------------

MULTI30K_REPOSITORY = "https://github.com/multi30k/dataset"
MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"  # newest read; data/task1/raw/ last changed in c40b37b (2020)
MULTI30K_RAW = f"https://raw.githubusercontent.com/multi30k/dataset/{MULTI30K_COMMIT}/data/task1/raw"
MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")
# data/task1/raw/ at that commit: each test set and the languages it exists in (the README's statistics
# list test_2017_flickr and test_2017_mscoco in en, de and fr; no Czech was made for them)
MULTI30K_TEST_SETS = {
    "test_2016_flickr": ("en", "de", "fr", "cs"),  # 1,000 sentences
    "test_2017_flickr": ("en", "de", "fr"),  # 1,000
    "test_2017_mscoco": ("en", "de", "fr"),  # 461, the ambiguous COCO set
    "test_2018_flickr": ("en", "de", "fr", "cs"),  # 1,071
}
MULTI30K_SPLITS = {"train": MULTI30K_LANGUAGES, "val": MULTI30K_LANGUAGES, **MULTI30K_TEST_SETS}
MULTI30K_MD5 = {  # md5 of each .gz file at MULTI30K_COMMIT
    "train.en.gz": "0065d13af80720a55ca8153d126e6627", "train.de.gz": "81ff90b99829c0cd4b1b587d394afd39",
    "train.fr.gz": "6cb767741dcad3931f966fefbc05203f", "train.cs.gz": "d9a5fc268917725a2b0efce3a0cc8607",
    "val.en.gz": "2b69aa9253948ac9f67e94917272dd40", "val.de.gz": "6e0e229eb049e3fc99a1ef02fb2d5f91",
    "val.fr.gz": "93fc564584b7e5ba410c761ea5a1c682", "val.cs.gz": "83cdc082f646b769095615384cf5c0ca",
    "test_2016_flickr.en.gz": "ff2c0fcb4893a13bd73414306bc250ae",
    "test_2016_flickr.de.gz": "efd67d314d98489b716b145475101932",
    "test_2016_flickr.fr.gz": "08dc7cd4a662f31718412de95ca9bfe3",
    "test_2016_flickr.cs.gz": "3104872229daa1bef3b401d44dd2220b",
    "test_2017_flickr.en.gz": "005396bac545d880abe6f00bbb7dbbb4",
    "test_2017_flickr.de.gz": "6a8d5c87f6ae19e3d35681aa6fd16571",
    "test_2017_flickr.fr.gz": "cb09af7d2b501f9112f2d6a59fa1360d",
    "test_2017_mscoco.en.gz": "a7b684e0edbef1d4a23660c8e8e743fd",
    "test_2017_mscoco.de.gz": "e8cd6ec2bc8a11fc846fa48a46e3d0bb",
    "test_2017_mscoco.fr.gz": "4995d10954a804d3cdfd907b9fd093e8",
    "test_2018_flickr.en.gz": "a152878809942757a55ce087073486b8",
    "test_2018_flickr.de.gz": "87e00327083dd69feaa029a8f7c1a047",
    "test_2018_flickr.fr.gz": "a64563e986438ed731a6713027c36bfd",
    "test_2018_flickr.cs.gz": "4c6b6490e58107b2e397c5e3e1690abc",
}
MULTI30K_FILES = tuple(f"{stem}.{language}.gz" for stem, languages in MULTI30K_SPLITS.items() for language in languages)
MULTI30K_ARCHIVE = f"{MULTI30K_REPOSITORY}/archive/{MULTI30K_COMMIT}.zip"
MULTI30K_LAYOUT = ("{train,val,test_2016_flickr,test_2018_flickr}.{en,de,fr,cs}.gz and "
                   "{test_2017_flickr,test_2017_mscoco}.{en,de,fr}.gz")


def multi30k_member(name: str) -> str | None:
    """The file name a member of an archive is prepared as, if it is one of Multi30k's task 1 raw files
    (gzipped, as in data/task1/raw/, or plain, as in the repository's multi30k_test_sets tarball)."""
    base = Path(name).name
    if base in MULTI30K_MD5 or f"{base}.gz" in MULTI30K_MD5:
        return base
    return None


def unpack_multi30k(archive: Path, target: Path) -> list[str]:
    """The Multi30k files of a zip or tar archive (e.g. GitHub's archive of multi30k/dataset), flattened
    into ``target``; the names written."""
    if not Path(archive).is_file():
        raise UserError(f"--archive {archive}: file not found")
    members: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.infolist():
                    if not member.is_dir() and multi30k_member(member.filename):
                        members[multi30k_member(member.filename)] = bundle.read(member)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                for member in bundle.getmembers():
                    if member.isfile() and multi30k_member(member.name):
                        members[multi30k_member(member.name)] = bundle.extractfile(member).read()
        else:
            raise UserError(f"--archive {archive}: neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        raise UserError(f"--archive {archive}: not a readable archive ({error})") from None
    if not members:
        raise UserError(f"--archive {archive}: holds none of Multi30k's task 1 files (data/task1/raw/{MULTI30K_LAYOUT} "
                        f"of {MULTI30K_REPOSITORY})")
    target.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        staged = target / f".{name}.part"
        staged.write_bytes(data)
        os.replace(staged, target / name)
    return sorted(members)


def prepare_multi30k(data_root: Path, archive: Path | None) -> None:
    """Multi30k task 1's raw files into ``<data root>/multi30k/``: the 22 files downloaded from the
    official repository (md5 checked), or the ones a local archive holds, or, offline, where they go."""
    target = Path(data_root) / "multi30k"
    if archive is not None:
        names = unpack_multi30k(archive, target)
        differing = [n for n in names if n in MULTI30K_MD5 and file_md5(target / n) != MULTI30K_MD5[n]]
        absent = [n for n in MULTI30K_FILES if n not in names and n.removesuffix(".gz") not in names]
        print(f"multi30k: unpacked {len(names)} file(s) into {target}: {', '.join(names)}")
        if differing:
            print(f"multi30k: differ from the files at {MULTI30K_REPOSITORY} commit {MULTI30K_COMMIT[:7]}: "
                  f"{', '.join(differing)}")
        if absent:
            print(f"multi30k: not in the archive (only what a run asks for is needed): {', '.join(absent)}")
        return
    if all((target / name).is_file() and file_md5(target / name) == md5 for name, md5 in MULTI30K_MD5.items()):
        print(f"multi30k: already prepared in {target} (all {len(MULTI30K_MD5)} md5 checksums match)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        for name in MULTI30K_FILES:
            url = f"{MULTI30K_RAW}/{name}"
            try:
                fetched = download(url, Path(scratch) / name)
            except OSError as error:
                raise UserError(
                    f"multi30k: could not download {url} ({error}). Put the files of {MULTI30K_REPOSITORY}'s "
                    f"data/task1/raw/ ({MULTI30K_LAYOUT}; a run needs only its two languages) in {target}/, or fetch "
                    f"{MULTI30K_ARCHIVE} and run `python -m repro data prepare multi30k --archive FILE.zip`") from None
            if file_md5(fetched) != MULTI30K_MD5[name]:
                raise UserError(f"multi30k: {url} has md5 {file_md5(fetched)}, expected {MULTI30K_MD5[name]}: "
                                f"a damaged download, try again")
        target.mkdir(parents=True, exist_ok=True)
        for name in MULTI30K_FILES:
            shutil.move(Path(scratch) / name, target / name)
    print(f"multi30k: prepared {target} ({len(MULTI30K_FILES)} files, md5 checked)")


register_dataset(ParallelTextSpec(
    name="multi30k",
    description="Multi30k task 1 (Flickr30k descriptions) in en, de, fr, cs: train 29000, val 1014; test sets "
                "test_2016_flickr (1000), test_2017_flickr (1000, no cs), test_2017_mscoco (461, no cs), "
                "test_2018_flickr (1071); --set test_set=NAME",
    folder="multi30k",
    required_files=("train.*", "val.*", "test_2016_flickr.*"),
    license="non-commercial research and educational use (multi30k/dataset README)",
    sources=(Source(f"{MULTI30K_REPOSITORY}/tree/{MULTI30K_COMMIT}/data/task1/raw",
                    f"data/task1/raw/{MULTI30K_LAYOUT} (Elliott et al. 2016, 2017; Barrault et al. 2018)",
                    dict(MULTI30K_MD5)),),
    prepare=prepare_multi30k,
    reader=line_aligned("multi30k", ("train",), ("val",), MULTI30K_LANGUAGES),
    languages=MULTI30K_LANGUAGES,
    test_sets=MULTI30K_TEST_SETS,
))

# --- Tatoeba ------------------------------------------------------------------------------------

TATOEBA_ZIP = Source("https://www.manythings.org/anki/fra-eng.zip",
                     "fra.txt inside the zip: English<TAB>French<TAB>attribution, updated by manythings.org from time to time")


def prepare_tatoeba(data_root: Path, archive: Path | None) -> None:
    """manythings.org's ``fra-eng.zip`` (downloaded, or a local ``--archive``): its ``fra.txt`` into
    ``<data root>/tatoeba/``."""
    target = Path(data_root) / "tatoeba"
    with tempfile.TemporaryDirectory() as scratch:
        if archive is None:
            try:
                archive = download(TATOEBA_ZIP.url, Path(scratch) / "fra-eng.zip")
            except OSError as error:
                raise UserError(
                    f"tatoeba: could not download {TATOEBA_ZIP.url} ({error}). Put its fra.txt in {target}/, or fetch "
                    f"the zip with a web browser and run `python -m repro data prepare tatoeba --archive fra-eng.zip`"
                ) from None
        unzip(Path(archive), target, ["fra.txt"])
    print(f"tatoeba: prepared {target / 'fra.txt'}")


register_dataset(ParallelTextSpec(
    name="tatoeba",
    description="Tatoeba English-French pairs, manythings.org format; split by md5 of the English sentence "
                "(test 2%, valid 2%, train 96%)",
    folder="tatoeba",
    required_files=("fra.txt",),
    license="CC-BY 2.0 (FR), Tatoeba terms of use; attribution www.manythings.org/anki and tatoeba.org",
    sources=(TATOEBA_ZIP,),
    prepare=prepare_tatoeba,
    reader=lambda folder, test_set: TatoebaPairs(folder / "fra.txt"),
    languages=("en", "fr"),
    test_sets={"test": ("en", "fr")},
))

# --- WMT'14 English-French ----------------------------------------------------------------------

WMT14_SOURCES = (
    Source("https://www.statmt.org/wmt14/translation-task.html",
           "WMT'14 English-French training data (Europarl v7, Common Crawl, UN, News Commentary v9, 10^9 "
           "French-English); Sutskever et al. used the 12M-sentence subset selected by Schwenk"),
    Source("http://www-lium.univ-lemans.fr/~schwenk/cslm_joint_paper/",
           "Schwenk's selected WMT'14 En-Fr subset (348M French / 304M English words), the paper's training set"),
    Source("https://www.statmt.org/wmt14/dev.tgz", "newstest2012 and newstest2013 (validation, as in the paper)"),
    Source("https://www.statmt.org/wmt14/test-full.tgz", "newstest2014 (the test set, 3003 sentences)"),
    Source("https://huggingface.co/datasets/wmt/wmt14", "HF `datasets` wmt14 fr-en: `repro data prepare wmt14` "
           "exports it to the plain files when `datasets` is installed and the data is in its cache"),
)
WMT14_VALID = ("newstest2012", "newstest2013")


def prepare_wmt14(data_root: Path, archive: Path | None) -> None:
    """Export WMT'14 fr-en from the HF datasets cache into plain files, or say which files go where."""
    target = Path(data_root) / "wmt14"
    layout = (f"put line-aligned files in {target}/: train.en train.fr (the training corpus, e.g. Schwenk's "
              f"selection), newstest2012.en/.fr, newstest2013.en/.fr (validation) and newstest2014.en/.fr (test); "
              f"plain or .gz; sgm test sets must be converted to one sentence per line first")
    if archive is not None:
        raise UserError(f"data prepare wmt14: --archive is not supported (several archives make this corpus); {layout}")
    try:
        import datasets
    except ImportError:
        raise UserError(f"data prepare wmt14: the `datasets` package is not installed, so nothing can be exported; "
                        f"{layout}") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # only what is already in the cache: no download here
    try:
        loaded = datasets.load_dataset("wmt14", "fr-en")
    except Exception as error:  # noqa: BLE001 - any failure means: not in the cache
        raise UserError(f"data prepare wmt14: HF datasets could not load wmt14 fr-en from its cache "
                        f"({type(error).__name__}); {layout}") from None
    target.mkdir(parents=True, exist_ok=True)
    # HF's validation is newstest2013 only; the paper validated on 2012+2013, so 2012 must come as files
    for split, stem in (("train", "train"), ("validation", "newstest2013"), ("test", "newstest2014")):
        for language in ("en", "fr"):
            with gzip.open(target / f"{stem}.{language}.gz", "wt", encoding="utf-8") as out:
                for row in loaded[split]:
                    out.write(row["translation"][language].replace("\n", " ") + "\n")
    print(f"wmt14: exported train, newstest2013 and newstest2014 to {target}; newstest2012.en/.fr must be added "
          f"from {WMT14_SOURCES[2].url}")


register_dataset(ParallelTextSpec(
    name="wmt14",
    description="WMT'14 English-French (the paper's data: newstest2012+2013 valid, newstest2014 test)",
    folder="wmt14",
    required_files=tuple(f"{stem}.{language}" for stem in ("train", *WMT14_VALID, "newstest2014")
                         for language in ("en", "fr")),
    license="WMT'14 shared task data; each corpus under its own terms (see statmt.org)",
    sources=WMT14_SOURCES,
    prepare=prepare_wmt14,
    reader=line_aligned("wmt14", ("train",), WMT14_VALID, ("en", "fr")),
    languages=("en", "fr"),
    test_sets={"newstest2014": ("en", "fr")},
))

# --- your own corpus ----------------------------------------------------------------------------

register_dataset(ParallelTextSpec(
    name="parallel",
    description="your own line-aligned corpus: {train,valid,test}.<source lang>/.<target lang>, plain or .gz",
    folder="parallel",
    required_files=("train.*", "valid.*", "test.*"),
    license="yours",
    reader=line_aligned("parallel", ("train",), ("valid",)),
    test_sets={"test": ()},
))
