"""A word vocabulary shared by every dataset: built from training text, saved with the checkpoint."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from repro.errors import UserError


@dataclass
class Vocabulary:
    words: list[str]  # index -> word, most frequent first after the special words
    counts: list[int]  # training counts, aligned with ``words`` (0 for special words never seen)
    unknown: str | None = None  # the word unseen words map to, if the vocabulary has one

    def __post_init__(self) -> None:
        self._index = {word: i for i, word in enumerate(self.words)}
        if len(self._index) != len(self.words):
            raise ValueError("vocabulary has repeated words")

    @classmethod
    def from_counts(cls, counts: Counter, specials: Iterable[str] = (), min_count: int = 1,
                    unknown: str | None = None, source: str = "training text") -> "Vocabulary":
        """Specials first, then words by descending count (ties alphabetical, so it is reproducible)."""
        specials = list(specials)
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in specials),
                      key=lambda w: (-counts[w], w))
        if not kept:
            raise UserError(f"{source}: the vocabulary is empty after keeping words seen at least "
                            f"{min_count} times ({len(counts)} distinct words before thresholding)")
        words = specials + kept
        return cls(words, [counts.get(w, 0) for w in words], unknown)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def index(self, word: str) -> int:
        found = self._index.get(word)
        if found is None:
            if self.unknown is None:
                raise KeyError(word)
            return self._index[self.unknown]
        return found

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index(token) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]

    def to_dict(self) -> dict:
        return {"words": self.words, "counts": self.counts, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, saved: dict) -> "Vocabulary":
        return cls(list(saved["words"]), list(saved["counts"]), saved.get("unknown"))
