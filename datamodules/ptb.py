"""Penn Treebank in Mikolov's language-model preprocessing, and any text in the same format.

The format: one sentence per line, words separated by spaces, ``<unk>`` for out-of-vocabulary words.
Every line ends with an end-of-sentence token ``<eos>`` that is predicted and counted in perplexity,
as in the RNNLM toolkit and the published PTB figures.

Training batches follow the usual truncated-BPTT layout (pytorch/examples word_language_model): the
training text is cut into ``batch_size`` parallel streams and read ``bptt`` words at a time, so the
hidden state can be carried from one batch to the next. Evaluation reads valid/test as one stream,
carrying the state through the whole text, so perplexities are comparable with the literature.

Several processes: ``batch_size`` is the number of streams of the whole run, and process ``r`` of
``N`` reads streams ``r*batch_size/N ... (r+1)*batch_size/N - 1``. The streams do not depend on ``N``,
so 1 process with 16 streams and 2 processes with 8 each train on the same words at every step.
Evaluation is one stream that cannot be split (the state and dynamic evaluation run through the text
in order), so every process scores the whole text and all get the 1-process number.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.catalog import DatasetSpec, Source, download, file_md5, folder_checksum, numbered_lines, register_dataset
from datamodules.vocabulary import Vocabulary
from repro.errors import UserError

END_OF_SENTENCE = "<eos>"
UNKNOWN = "<unk>"
IGNORE_INDEX = -100
SPLITS = ("train", "valid", "test")

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


def read_sentences(path: Path) -> list[list[str]]:
    """Read one sentence per line; a blank or undecodable line is an error naming file and line."""
    sentences = []
    for line_number, line in numbered_lines(path):
        words = line.split()
        if not words:
            raise UserError(f"{path}:{line_number}: empty line; expected one sentence of space-separated words")
        if "\t" in line.strip():
            raise UserError(f"{path}:{line_number}: tab character; expected space-separated words (PTB format)")
        sentences.append(words)
    if not sentences:
        raise UserError(f"{path}: file is empty; expected one sentence per line")
    return sentences


def check_ptb_file(path: Path, sentences: list[list[str]]) -> None:
    """Mikolov's PTB files have known sizes: a truncated or altered copy is named, not used."""
    expected_lines, expected_words, expected_md5 = PTB_FILES[path.name]
    words = sum(len(s) for s in sentences)
    if (len(sentences), words) != (expected_lines, expected_words):
        raise UserError(f"{path}: {len(sentences)} lines / {words} words, expected {expected_lines} lines / "
                        f"{expected_words} words (Mikolov's PTB, md5 {expected_md5}); the file looks truncated "
                        f"or altered: run `python -m repro data prepare ptb`")


def text_stream(sentences: list[list[str]], vocabulary: Vocabulary) -> torch.Tensor:
    """Word ids of the whole text, starting with <eos> as the context of the first word (RNNLM toolkit)."""
    ids = [vocabulary.index(END_OF_SENTENCE)]
    for sentence in sentences:
        ids.extend(vocabulary.encode(sentence))
        ids.append(vocabulary.index(END_OF_SENTENCE))
    return torch.tensor(ids, dtype=torch.long)


class StreamChunks(Dataset):
    """Chunk ``i`` of parallel streams: (inputs, targets) of shape [streams, <= bptt]."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, bptt: int):
        self.inputs, self.targets, self.bptt = inputs, targets, bptt

    def __len__(self) -> int:
        return -(-self.inputs.shape[1] // self.bptt)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = slice(i * self.bptt, (i + 1) * self.bptt)
        return self.inputs[:, window], self.targets[:, window]


class ResumableChunks:
    """The training loader: chunks in order, resumable in the middle of an epoch.

    Lightning saves ``state_dict()`` in every checkpoint and calls ``load_state_dict()`` before the
    resumed epoch starts, so a run restarted from a mid-epoch checkpoint continues with the next chunk
    instead of re-reading the epoch from its start (Lightning fetches without prefetching when the
    length is known, so the chunks handed out are exactly the chunks trained on).
    """

    def __init__(self, chunks: Dataset):
        self.chunks = chunks
        self.position = 0  # chunks handed out in the current epoch
        self._start = 0

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        start, self._start = self._start, 0
        for index in range(start, len(self.chunks)):
            self.position = index + 1
            yield self.chunks[index]

    def state_dict(self) -> dict:
        return {"position": self.position, "length": len(self.chunks)}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint from the end of an epoch starts the next epoch from its first chunk
        position = int(state.get("position", 0))
        self._start = position if 0 < position < len(self.chunks) else 0
        self.position = self._start


def split_streams(ids: torch.Tensor, count: int, pad_to_equal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a text into ``count`` contiguous streams of (input, next-word target).

    Training drops the last ``< count`` words so the streams are equal; evaluation keeps every word and
    pads the targets with IGNORE_INDEX, so each word is scored exactly once.
    """
    inputs, targets = ids[:-1], ids[1:]
    if pad_to_equal:
        length = -(-inputs.numel() // count)
        padding = length * count - inputs.numel()
        inputs = torch.cat([inputs, inputs.new_zeros(padding)])
        targets = torch.cat([targets, targets.new_full((padding,), IGNORE_INDEX)])
    else:
        length = inputs.numel() // count
        inputs, targets = inputs[: length * count], targets[: length * count]
    return inputs.view(count, length), targets.view(count, length)


class PennTreebankDataModule(L.LightningDataModule):
    """Reads ``ptb.{train,valid,test}.txt`` from ``folder``; the vocabulary is built from training text.

    ``batch_size`` is the number of training streams of the whole run; with N processes each reads
    ``batch_size / N`` of them (see the module docstring), so the result does not depend on N.
    """

    def __init__(self, folder: Path, batch_size: int = 32, bptt: int = 32, eval_bptt: int = 512,
                 check_standard_ptb: bool = True):
        super().__init__()
        self.folder = Path(folder)
        self.batch_size, self.bptt, self.eval_bptt = batch_size, bptt, eval_bptt
        self.check_standard_ptb = check_standard_ptb
        self._sentences: dict[str, list[list[str]]] | None = None
        self._vocabulary: Vocabulary | None = None

    # Reading is cheap (seconds for PTB) and every process needs the text, so it happens on first use
    # in each process rather than in prepare_data.
    @property
    def sentences(self) -> dict[str, list[list[str]]]:
        if self._sentences is None:
            # every file's format first (an error there names file and line), then the standard sizes
            loaded = {split: read_sentences(self.folder / f"ptb.{split}.txt") for split in SPLITS}
            for split in SPLITS:
                path = self.folder / f"ptb.{split}.txt"
                if self.check_standard_ptb and path.name in PTB_FILES:
                    check_ptb_file(path, loaded[split])
            self._sentences = loaded
        return self._sentences

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            counts = Counter(word for sentence in self.sentences["train"] for word in sentence)
            counts[END_OF_SENTENCE] = len(self.sentences["train"])
            unknown = UNKNOWN if UNKNOWN in counts else None
            self._vocabulary = Vocabulary.from_counts(counts, unknown=unknown, source=str(self.folder / "ptb.train.txt"))
            for split in ("valid", "test"):
                self._check_covered(split)
        return self._vocabulary

    def _check_covered(self, split: str) -> None:
        if self._vocabulary.unknown is not None:
            return
        for line_number, sentence in enumerate(self.sentences[split], start=1):
            for word in sentence:
                if word not in self._vocabulary:
                    raise UserError(f"{self.folder / f'ptb.{split}.txt'}:{line_number}: word {word!r} is not in the "
                                    f"training vocabulary and the text has no {UNKNOWN} token to map it to")

    def checksum(self) -> str:
        return folder_checksum(self.folder, [f"ptb.{split}.txt" for split in SPLITS])

    def token_count(self, split: str) -> int:
        """Words scored in perplexity: every word plus one <eos> per sentence."""
        return sum(len(s) + 1 for s in self.sentences[split])

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def streams_per_process(self, world: int) -> int:
        if self.batch_size % world:
            raise UserError(f"--set batch_size={self.batch_size}: the training streams must divide evenly over "
                            f"{world} processes (batch_size is the whole run's number of streams)")
        return self.batch_size // world

    def train_dataloader(self) -> ResumableChunks:
        rank, world = self._rank_and_world()
        per_process = self.streams_per_process(world)
        ids = text_stream(self.sentences["train"], self.vocabulary)
        inputs, targets = split_streams(ids, self.batch_size, pad_to_equal=False)
        mine = slice(rank * per_process, (rank + 1) * per_process)
        return ResumableChunks(StreamChunks(inputs[mine], targets[mine], self.bptt))

    def _evaluation_loader(self, split: str) -> DataLoader:
        # The whole text as one stream, in every process (module docstring): the literature's number.
        ids = text_stream(self.sentences[split], self.vocabulary)
        inputs, targets = split_streams(ids, 1, pad_to_equal=True)
        return DataLoader(StreamChunks(inputs, targets, self.eval_bptt), batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")


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


register_dataset(DatasetSpec(
    name="ptb",
    description="Penn Treebank, Mikolov's LM preprocessing (10k words, 887k/70k/79k train/valid/test words)",
    folder="ptb",
    required_files=tuple(PTB_FILES),
    license="derived from LDC99T42 (Penn Treebank WSJ); research use",
    sources=(SIMPLE_EXAMPLES,),
    prepare=prepare_ptb,
))
