"""Generated corpora in WikiText's release format (and in the plain ``text`` format), for the tests.

The layout is the release's (datamodules/language_modeling/wikitext.py): ``wiki.{train,valid,test}.tokens`` (or ``.raw``),
as many lines as the release has, each line a paragraph, a heading `` = Title = `` / `` = = Section = = ``
or a blank line (one space), words and punctuation separated by spaces, numbers split with ``@,@`` and
``@.@``, compounds with ``@-@``. The tokenized variant has ``<unk>`` where the raw one has a rare word,
as in the release. Most lines are blank so that a file with the release's line count stays small.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

WIKITEXT2_LINES = (36_718, 3_760, 4_358)
WIKITEXT103_LINES = (1_801_350, 3_760, 4_358)
SPLITS = ("train", "valid", "test")


def _word(rng: random.Random, vocabulary: list[str], weights: list[float]) -> str:
    return rng.choices(vocabulary, weights)[0]


def paragraph(rng: random.Random, vocabulary: list[str], weights: list[float], raw: bool, rare: list[int]) -> str:
    words = []
    for _ in range(rng.randint(4, 12)):
        roll = rng.random()
        if roll < 0.05:  # a word the tokenized release replaced by <unk>: a different rare word each time
            rare[0] += 1
            words.append(f"Rare{rare[0]}" if raw else "<unk>")
        elif roll < 0.08:
            words += [str(rng.randint(1, 99)), "@,@", f"{rng.randint(0, 999):03d}"]
        elif roll < 0.10:
            words += [str(rng.randint(1, 9)), "@.@", str(rng.randint(0, 9))]
        elif roll < 0.12:
            words += [_word(rng, vocabulary, weights), "@-@", _word(rng, vocabulary, weights)]
        else:
            words.append(_word(rng, vocabulary, weights))
    return " " + " ".join(words + ["."]) + " "


def wikitext_lines(count: int, seed: int, raw: bool = False, words_per_article: int = 40) -> list[str]:
    """``count`` lines in the release's layout: articles of headings and paragraphs between blank lines,
    then blank lines up to ``count``."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(300)] + ["the", ",", "of", "and", "in", "(", ")", '"', "'s"]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    rare = [seed * 1_000_000]
    lines: list[str] = []
    articles = max(1, min(count // 100, 400))  # WikiText-103's 1.8M training lines stay mostly blank
    for number in range(articles):
        lines += [" ", f" = Article {number} = ", " "]
        lines += [paragraph(rng, vocabulary, weights, raw, rare) for _ in range(2)]
        lines += [" ", f" = = Section {rng.randint(1, 5)} = = ", " ", paragraph(rng, vocabulary, weights, raw, rare), " "]
        if len(lines) >= count:
            break
    lines = lines[:count]
    return lines + [" "] * (count - len(lines))


def write_wikitext(folder: Path, suffix: str = "tokens", lines: tuple[int, int, int] = WIKITEXT2_LINES,
                   seed: int = 0) -> Path:
    """wiki.{train,valid,test}.<suffix> with the given line counts; the raw variant has the same text with
    rare words where the tokenized one has <unk>."""
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(zip(SPLITS, lines)):
        text = wikitext_lines(count, seed + offset, raw=suffix == "raw")
        (folder / f"wiki.{split}.{suffix}").write_text("".join(line + "\n" for line in text), encoding="utf-8")
    return folder


def wikitext_zip(path: Path, top: str, suffix: str, lines: tuple[int, int, int] = WIKITEXT2_LINES) -> Path:
    """A zip laid out as the release's: ``<top>/wiki.<split>.<suffix>``."""
    staged = write_wikitext(path.parent / f"{path.stem}-files", suffix, lines)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for split in SPLITS:
            bundle.write(staged / f"wiki.{split}.{suffix}", f"{top}/wiki.{split}.{suffix}")
    return path


def write_text(folder: Path, **contents: str | bytes | None) -> Path:
    """train.txt, valid.txt, test.txt of your own text (a few sentences, blank lines between paragraphs);
    ``contents`` replace a file (None: leave it out)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    nouns, verbs = ["cat", "dog", "bird", "child", "farmer"], ["sees", "likes", "follows", "finds"]

    def sentences(count: int) -> str:
        lines = []
        for number in range(count):
            lines.append(f"The {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)} .")
            if number % 50 == 0:  # a name seen once: what a vocabulary cut-off turns into <unk>
                lines.append(f"Name{number} sees the {rng.choice(nouns)} .")
            if number % 5 == 4:
                lines.append("")  # a paragraph break
        return "\n".join(lines) + "\n"

    defaults = {"train": sentences(400), "valid": sentences(40) + "The zebra sees the dog .\n", "test": sentences(40)}
    for split in SPLITS:
        data = contents.get(split, defaults[split])
        if data is None:
            continue
        path = folder / f"{split}.txt"
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data, encoding="utf-8")
    return folder
