"""Penn Treebank in Mikolov's language-model preprocessing, and any text in the same format.

The format: one sentence per line, words separated by spaces, ``<unk>`` for out-of-vocabulary words,
no blank lines and no tabs; ``ptb.{train,valid,test}.txt`` in one folder. Mikolov's three files have
known sizes (``PTB_FILES``): a truncated or altered copy is named, not used. The datamodule, the
vocabulary and the streams are every language-model corpus's (``datamodules.language_modeling.text``).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from datamodules.catalog import Source, download, register_dataset
from datamodules.language_modeling.text import SPLITS, LanguageModelCorpusSpec, LanguageModelDataModule, TextFiles
from repro.errors import UserError
from repro.files import file_md5

# Mikolov's files: (lines, words without <eos>, md5); see ../shared/data/ptb/SOURCE.txt
PTB_FILES = {
    "ptb.train.txt": (42068, 887521, "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
    "ptb.valid.txt": (3370, 70390, "aa0affc06ff7c36e977d7cd49e3839bf"),
    "ptb.test.txt": (3761, 78669, "8b80168b89c18661a38ef683c0dc3721"),
}
SIMPLE_EXAMPLES = Source(
    url="http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
    description="Mikolov's RNNLM 'simple-examples' archive; the files are in simple-examples/data/",
    member_md5={name: md5 for name, (_, _, md5) in PTB_FILES.items()},
)


def check_ptb_file(path: Path, lines: int, words: int) -> None:
    """Mikolov's PTB files have known sizes: a truncated or altered copy is named, not used."""
    expected_lines, expected_words, expected_md5 = PTB_FILES[path.name]
    if (lines, words) != (expected_lines, expected_words):
        raise UserError(f"{path}: {lines} lines / {words} words, expected {expected_lines} lines / "
                        f"{expected_words} words (Mikolov's PTB, md5 {expected_md5}); the file looks truncated "
                        f"or altered: run `python -m repro data prepare ptb`")


def ptb_files(folder: Path, check_standard_ptb: bool = True) -> TextFiles:
    """``ptb.{train,valid,test}.txt`` in ``folder``, read in PTB's format; with ``check_standard_ptb``,
    each must be Mikolov's file (its line and word counts)."""
    return TextFiles("ptb", {split: Path(folder) / f"ptb.{split}.txt" for split in SPLITS}, blank_lines="error",
                     tabs=False, check=check_ptb_file if check_standard_ptb else None)


class PennTreebankDataModule(LanguageModelDataModule):
    """Reads ``ptb.{train,valid,test}.txt`` from ``folder``; the vocabulary is built from training text."""

    def __init__(self, folder: Path, batch_size: int = 32, bptt: int = 32, eval_bptt: int = 512,
                 check_standard_ptb: bool = True):
        super().__init__(ptb_files(folder, check_standard_ptb), batch_size, bptt, eval_bptt)
        self.folder = Path(folder)


def prepare_ptb(data_root: Path, archive: Path | None) -> None:
    """Put Mikolov's three PTB files in ``<data root>/ptb``, from a local archive or by downloading."""
    target = data_root / "ptb"
    if all((target / name).is_file() and file_md5(target / name) == md5 for name, (_, _, md5) in PTB_FILES.items()):
        print(f"ptb: already prepared in {target} (all three md5 checksums match)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        if archive is None:
            archive = Path(scratch) / "simple-examples.tgz"
            print(f"ptb: downloading {SIMPLE_EXAMPLES.url}")
            try:
                download(SIMPLE_EXAMPLES.url, archive)
            except OSError as error:
                raise UserError(
                    f"ptb: could not download {SIMPLE_EXAMPLES.url} ({error}). On a machine with internet, fetch "
                    f"that archive and run `python -m repro data prepare ptb --archive simple-examples.tgz`, or place "
                    f"ptb.train.txt, ptb.valid.txt and ptb.test.txt (from simple-examples/data/) in {target}/"
                ) from None
        if not Path(archive).is_file():
            raise UserError(f"--archive {archive}: file not found")
        try:
            with tarfile.open(archive) as tar:
                members = {Path(m.name).name: m for m in tar.getmembers()
                           if Path(m.name).name in PTB_FILES and m.isfile()}
                missing = sorted(set(PTB_FILES) - set(members))
                if missing:
                    raise UserError(f"{archive}: does not contain {', '.join(missing)} (expected simple-examples/data/)")
                target.mkdir(parents=True, exist_ok=True)
                for name, member in members.items():
                    staged = Path(scratch) / name
                    with tar.extractfile(member) as source, open(staged, "wb") as out:
                        shutil.copyfileobj(source, out)
                    if file_md5(staged) != SIMPLE_EXAMPLES.member_md5[name]:
                        raise UserError(f"{archive}: {member.name} has md5 {file_md5(staged)}, expected "
                                        f"{SIMPLE_EXAMPLES.member_md5[name]} (Mikolov's file)")
                    shutil.move(staged, target / name)
        except tarfile.TarError as error:
            raise UserError(f"{archive}: not a readable tar archive ({error})") from None
    print(f"ptb: prepared {target} (md5 checked)")


register_dataset(LanguageModelCorpusSpec(
    name="ptb",
    description="Penn Treebank, Mikolov's LM preprocessing (10k words, 887k/70k/79k train/valid/test words)",
    folder="ptb",
    required_files=tuple(PTB_FILES),
    license="derived from LDC99T42 (Penn Treebank WSJ); research use",
    sources=(SIMPLE_EXAMPLES,),
    prepare=prepare_ptb,
    reader=ptb_files,
))
