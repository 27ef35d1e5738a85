"""WikiText-2 and WikiText-103 (Merity et al. 2016), and your own text, for the language models.

WikiText (Merity, Xiong, Bradbury, Socher, "Pointer Sentinel Mixture Models", arXiv:1609.07843, Sec. 4):
the text of Wikipedia's Good and Featured articles, case, punctuation and numbers kept, tokenized (spaces
around punctuation; a hyphen, comma or point inside a number or compound is its own token ``@-@``,
``@,@``, ``@.@``: ``2 @.@ 9 in``, ``20 @,@ 000``, ``north @-@ eastern``). One line per paragraph; an
article starts with a heading line `` = Title = ``, its sections `` = = Section = = `` (deeper ones with
more ``=``); blank lines (a single space) separate paragraphs and headings. The release, as checked
here against torchtext's WikiText2/WikiText103 (URLs, zip md5s, line counts), HF datasets' ``wikitext``
loading script and dataset card (configs, folders, file names, rows per split, sizes) and
pytorch/examples word_language_model's copy of WikiText-2 (``data/wikitext-2/{train,valid,test}.txt``,
the ``.tokens`` files renamed):

- ``wikitext-2-v1.zip`` unpacks to ``wikitext-2/wiki.{train,valid,test}.tokens``, 36,718 / 3,760 /
  4,358 lines. Words seen fewer than 3 times in training are already ``<unk>`` (the vocabulary is
  closed as released: Merity et al.'s Table 1 gives 33,278 words, 2.6% of tokens ``<unk>``).
- ``wikitext-2-raw-v1.zip`` unpacks to ``wikitext-2-raw/wiki.{train,valid,test}.raw``: the same lines
  before the ``<unk>`` replacement (the HF card shows the first training article as
  ``Senjō no Valkyria 3 : <unk> Chronicles`` in ``wikitext-2-v1`` and with the word in the raw one),
  tokenized the same way (HF's raw sample: ``2 @.@ 9 in``, ``24 @-@ step``).
- ``wikitext-103-v1.zip`` / ``wikitext-103-raw-v1.zip``: ``wikitext-103/wiki.*.tokens`` and
  ``wikitext-103-raw/wiki.*.raw``, 1,801,350 / 3,760 / 4,358 lines, a 267,735-word vocabulary. Its
  valid and test articles are WikiText-2's (the raw files are byte for byte the same size in the HF
  card); only the ``<unk>`` replacement differs, so the two corpora's numbers are not interchangeable.

Lines and sentences: every line, blank or heading, is a sentence ending in ``<eos>``, as
pytorch/examples' ``data.py`` and torchtext read the files (``line.split() + ['<eos>']``); torchtext's
WikiText-2 training stream is then 2,088,628 tokens, Merity et al.'s Table 1 count, so perplexities
here count the same tokens as the literature's (a blank line's ``<eos>`` is an easy prediction that
lowers perplexity a little: it is part of the benchmark). Words are split at white space in both
variants. The tokenized files are read with their vocabulary as released (every training word, and
``<unk>`` for the rest); the raw files have no ``<unk>``, so they take Merity et al.'s cut-off, words
seen fewer than 3 times in training become ``<unk>`` (``min_count``; ``--set min_count=N`` changes it).
Each file must have the release's line count: a truncated or altered copy is named, not used.

Where the files come from: ``<data root>/wikitext-2/`` (and ``-raw``, ``wikitext-103``...), filled by
``python -m repro data prepare wikitext2`` (from a local ``--archive``, from HF datasets' cache, or by
downloading), or, when that folder is missing and the ``datasets`` package is installed, HF datasets'
copy (``Salesforce/wikitext``, formerly ``wikitext``) if it is already in the local cache: it is never
downloaded here (``HF_DATASETS_OFFLINE``), its rows are the files' lines (the loading script yields one
row per line, a blank line as ""), and it is written once as the release's files under
``$REPRO_CACHE/hf-wikitext/`` so that the run reads (and checksums) files like any other.

Your own text (``text``): ``train.txt``, ``valid.txt`` and ``test.txt`` in ``--data-dir``, UTF-8, one
sentence or paragraph per line, words split at white space (tokenize it first if you want punctuation
split off); blank lines are skipped (they separate paragraphs; an ``<eos>`` for them would be a free
prediction), and ``<unk>`` in the text is the unknown word. Every training word is kept unless a cut-off
is set: with ``--set min_count=2`` words seen once in training become ``<unk>``, which is what lets the
model score valid/test words it never saw (without ``<unk>`` such a word is an error naming its line).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from datamodules.catalog import Source, cache_dir, download, register_dataset, unzip, write_sample_once
from datamodules.language_modeling.text import SPLITS, LanguageModelCorpusSpec, TextFiles, say
from repro.errors import UserError

MERITY_MIRROR = "https://wikitext.smerity.com"  # Merity's own copy of the zips
SALESFORCE_S3 = "https://s3.amazonaws.com/research.metamind.io/wikitext"  # the original links (torchtext, HF's script)
HF_NAMES = ("Salesforce/wikitext", "wikitext")  # the hub's id now, and the name older caches hold
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
HF_OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
LICENSE = "CC BY-SA (Wikipedia text); see the HF dataset card and Merity et al. 2016"


@dataclass(frozen=True)
class WikiTextRelease:
    """One of the four WikiText zips: what it unpacks to, and how its files are read here."""

    name: str  # the dataset's name in this suite (--data NAME)
    title: str
    folder: str  # the zip's top folder, and the folder under the data root
    suffix: str  # wiki.<split>.<suffix>: "tokens" or "raw"
    archive: str
    archive_bytes: int  # the HF card's download_size of the config (the zip)
    hf_config: str
    lines: tuple[int, int, int]  # train, valid, test (torchtext's NUM_LINES, the HF card's rows)
    min_count: int  # 1: the vocabulary as released; 3: Merity et al.'s cut-off, for the raw files

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f"wiki.{split}.{self.suffix}" for split in SPLITS)

    @property
    def urls(self) -> tuple[str, ...]:
        return f"{MERITY_MIRROR}/{self.archive}", f"{SALESFORCE_S3}/{self.archive}"

    def layout(self, target: Path) -> str:
        return f"put {', '.join(self.file_names)} (the {self.folder}/ folder of {self.archive}) in {target}/"

    # --- reading ----------------------------------------------------------------------------------
    def files(self, folder: Path) -> TextFiles:
        """The release's three files in ``folder``, else HF datasets' cached copy, else a one-line error."""
        paths = {split: Path(folder) / name for split, name in zip(SPLITS, self.file_names)}
        missing = [path for path in paths.values() if not path.is_file()]
        if missing:
            exported = self.hf_export(Path(folder), missing[0])
            say(f"DATA: {folder} does not hold {self.title}; reading HF datasets' cached copy ({self.hf_config}), "
                f"written as the release's files in {exported}")
            paths = {split: exported / name for split, name in zip(SPLITS, self.file_names)}
        return TextFiles(self.title, paths, blank_lines="sentence", tabs=True, min_count=self.min_count,
                         check=self.check)

    def check(self, path: Path, lines: int, words: int) -> None:
        expected = self.lines[self.file_names.index(path.name)]
        if lines != expected:
            raise UserError(f"{path}: {lines:,} lines, expected {expected:,} ({self.title}'s {path.name} in "
                            f"{self.archive}); the file looks truncated or altered: run `python -m repro data "
                            f"prepare {self.name}` (other text: --data text)")

    def hf_export(self, folder: Path, missing: Path) -> Path:
        """HF datasets' cached copy, written once as the release's files under the suite's cache."""
        target = cache_dir() / "hf-wikitext" / self.hf_config

        def write(staging: Path) -> None:
            lines, why = hf_cached_lines(self.hf_config)
            if lines is None:
                raise UserError(f"{self.name}: {missing} not found, and {why}; run `python -m repro data prepare "
                                f"{self.name}`, or {self.layout(folder)}")
            write_lines(staging, dict(zip(self.file_names, (lines[split] for split in SPLITS))))

        return write_sample_once(target, lambda f: all((f / name).is_file() for name in self.file_names), write)

    # --- python -m repro data prepare ---------------------------------------------------------------
    def prepare(self, data_root: Path, archive: Path | None) -> None:
        """The release's files into ``<data root>/<folder>/``: from a local zip, else from HF datasets'
        cache, else downloaded; offline, a one-line error saying which file goes where."""
        target = Path(data_root) / self.folder
        if archive is not None:
            self.unpack(Path(archive), target)
            print(f"{self.name}: unpacked {', '.join(self.file_names)} from {archive} into {target} (line counts checked)")
            return
        if all((target / name).is_file() for name in self.file_names) and self.lines_match(target):
            print(f"{self.name}: already prepared in {target} (line counts match the release)")
            return
        lines, why = hf_cached_lines(self.hf_config)
        if lines is not None:
            write_lines(target, dict(zip(self.file_names, (lines[split] for split in SPLITS))))
            self.unpacked_lines_match(target, f"HF datasets' {self.hf_config}")
            print(f"{self.name}: wrote HF datasets' cached {self.hf_config} into {target} as {', '.join(self.file_names)}")
            return
        with tempfile.TemporaryDirectory() as scratch:
            errors = []
            for url in self.urls:
                try:
                    print(f"{self.name}: downloading {url}")
                    fetched = download(url, Path(scratch) / self.archive)
                    break
                except OSError as error:
                    errors.append(f"{url} ({error})")
            else:
                raise UserError(f"{self.name}: could not download {'; nor '.join(errors)}; and {why}. On a machine with "
                                f"internet, fetch {self.urls[0]} and run `python -m repro data prepare {self.name} "
                                f"--archive {self.archive}`, or {self.layout(target)}")
            self.unpack(fetched, target)
        print(f"{self.name}: prepared {target} (line counts checked)")

    def unpack(self, archive: Path, target: Path) -> None:
        if not archive.is_file():
            raise UserError(f"--archive {archive}: file not found")
        try:
            unzip(archive, target, self.file_names)
        except UserError as error:
            raise UserError(f"{error} ({self.archive} holds {self.folder}/{{{','.join(self.file_names)}}})") from None
        self.unpacked_lines_match(target, str(archive))

    def lines_match(self, folder: Path) -> bool:
        return all(count_lines(folder / name) == lines for name, lines in zip(self.file_names, self.lines))

    def unpacked_lines_match(self, folder: Path, origin: str) -> None:
        for name, expected in zip(self.file_names, self.lines):
            found = count_lines(folder / name)
            if found != expected:
                raise UserError(f"{origin}: {name} has {found:,} lines, expected {expected:,} ({self.title}'s release)")


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def write_lines(folder: Path, files: dict[str, list[str]]) -> None:
    """Each file written whole or not at all (a killed export leaves no half-written file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        partial = folder / f".{name}.part"
        with open(partial, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(line + "\n" for line in lines)
        os.replace(partial, folder / name)


def hf_cached_lines(config: str) -> tuple[dict[str, list[str]] | None, str]:
    """Each split's lines of HF datasets' copy of WikiText ``config``, or None and why not: only when the
    ``datasets`` package is installed and the copy is already in its local cache (offline, never a download)."""
    saved = {name: os.environ.get(name) for name in HF_OFFLINE}
    os.environ.update({name: "1" for name in HF_OFFLINE})  # read when `datasets` is imported...
    try:
        try:
            import datasets
        except ImportError:
            return None, "the `datasets` package (HF datasets) is not installed to look in its cache"
        settings = getattr(datasets, "config", None)  # ...and here, if it was imported before
        was_offline = getattr(settings, "HF_DATASETS_OFFLINE", None)
        if settings is not None and was_offline is not None:
            settings.HF_DATASETS_OFFLINE = True
        try:
            failures = []
            for name in HF_NAMES:
                try:
                    loaded = datasets.load_dataset(name, config)
                except Exception as error:  # noqa: BLE001 - any failure means: not in the cache
                    failures.append(f"{name}: {type(error).__name__}")
                    continue
                return {split: [row["text"].rstrip("\r\n") for row in loaded[hf_split]]
                        for split, hf_split in HF_SPLITS.items()}, ""
            return None, f"HF datasets' cache has no {config} ({'; '.join(failures)})"
        finally:
            if settings is not None and was_offline is not None:
                settings.HF_DATASETS_OFFLINE = was_offline
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class WikiTextSpec(LanguageModelCorpusSpec):
    """A WikiText release. Its folder may be missing when HF datasets' cache has the copy, so the reader,
    not the catalog, names a missing file; ``--data auto`` and ``data list`` look for the folder only."""

    def missing_files(self, data_root: Path) -> list[Path]:
        return []

    def is_present(self, data_root: Path) -> bool:
        return all((Path(data_root) / self.folder / name).is_file() for name in self.required_files)


RELEASES = (
    WikiTextRelease("wikitext2", "WikiText-2", "wikitext-2", "tokens", "wikitext-2-v1.zip", 4_475_746,
                    "wikitext-2-v1", (36_718, 3_760, 4_358), min_count=1),
    WikiTextRelease("wikitext2-raw", "WikiText-2 (raw)", "wikitext-2-raw", "raw", "wikitext-2-raw-v1.zip", 4_721_645,
                    "wikitext-2-raw-v1", (36_718, 3_760, 4_358), min_count=3),
    WikiTextRelease("wikitext103", "WikiText-103", "wikitext-103", "tokens", "wikitext-103-v1.zip", 190_229_076,
                    "wikitext-103-v1", (1_801_350, 3_760, 4_358), min_count=1),
    WikiTextRelease("wikitext103-raw", "WikiText-103 (raw)", "wikitext-103-raw", "raw", "wikitext-103-raw-v1.zip",
                    191_984_949, "wikitext-103-raw-v1", (1_801_350, 3_760, 4_358), min_count=3),
)
# torchtext's md5s of the original zips (WikiText2, WikiText103); the raw ones it does not list
ARCHIVE_MD5 = {"wikitext-2-v1.zip": "542ccefacc6c27f945fb54453812b3cd",
               "wikitext-103-v1.zip": "9ddaacaf6af0710eda8c456decff7832"}


def register_release(release: WikiTextRelease) -> None:
    vocabulary = ("vocabulary as released, <unk> kept" if release.min_count == 1 else
                  f"no <unk>: words seen fewer than {release.min_count} times in training become <unk>")
    md5 = f", md5 {ARCHIVE_MD5[release.archive]}" if release.archive in ARCHIVE_MD5 else ""
    register_dataset(WikiTextSpec(
        name=release.name,
        description=f"{release.title} (Merity et al. 2016): {release.lines[0]:,}/{release.lines[1]:,}/"
                    f"{release.lines[2]:,} train/valid/test lines, each line a sentence ending in <eos>; {vocabulary}",
        folder=release.folder,
        required_files=release.file_names,
        license=LICENSE,
        sources=(Source(f"{release.urls[0]} (or {release.urls[1]})",
                        f"{release.archive} ({release.archive_bytes:,} bytes{md5}): "
                        f"{release.folder}/{{{','.join(release.file_names)}}}"),
                 Source(f"https://huggingface.co/datasets/{HF_NAMES[0]}",
                        f"HF datasets' copy ({release.hf_config}): read from the local cache when `datasets` is "
                        f"installed, never downloaded by this suite")),
        prepare=release.prepare,
        reader=release.files,
    ))


for _release in RELEASES:
    register_release(_release)


# --- your own text ------------------------------------------------------------------------------

TEXT_FILES = ("train.txt", "valid.txt", "test.txt")


def text_files(folder: Path) -> TextFiles:
    return TextFiles("text", {split: Path(folder) / name for split, name in zip(SPLITS, TEXT_FILES)},
                     blank_lines="skip", tabs=True, min_count=1)


def explain_text(data_root: Path, archive: Path | None) -> None:
    """Nothing to download: say where your files go."""
    missing = [name for name in TEXT_FILES if not (Path(data_root) / name).is_file()]
    if archive is not None or missing:
        raise UserError(f"text: your own corpus is not downloaded or unpacked: put {', '.join(TEXT_FILES)} (UTF-8, one "
                        f"sentence or paragraph per line) in a folder and pass it as --data-dir (missing in "
                        f"{data_root}: {', '.join(missing) or 'none'})")
    print(f"text: {', '.join(TEXT_FILES)} are in {data_root}; run with --data text --data-dir {data_root}")


register_dataset(LanguageModelCorpusSpec(
    name="text",
    description="your own text: train.txt, valid.txt, test.txt in --data-dir, one sentence or paragraph per line "
                "(UTF-8, words split at white space, blank lines skipped; --set min_count=N for a vocabulary cut-off)",
    folder="",
    required_files=TEXT_FILES,
    license="yours",
    prepare=explain_text,
    reader=text_files,
))
