"""Text as a translator sees it: Moses tokenization, the special tokens, and source reversal.

Shared by the parallel-text datamodules (which tokenize corpora) and the translation models (which
tokenize what ``repro translate`` is given), so both always agree on the tokens.
"""

from __future__ import annotations

from functools import lru_cache

from repro.vocabulary import Vocabulary

PAD, BOS, EOS, UNKNOWN = "<pad>", "<s>", "</s>", "<unk>"


SPECIALS = (PAD, BOS, EOS, UNKNOWN)  # PAD is index 0 in both vocabularies


TOKENIZATION_VERSION = 1  # bump when tokenization changes, so cached corpora are rebuilt


@lru_cache(maxsize=None)
def _moses(language: str):
    from sacremoses import MosesDetokenizer, MosesTokenizer

    return MosesTokenizer(lang=language), MosesDetokenizer(lang=language)


def tokenize(text: str, language: str, lowercase: bool = False) -> list[str]:
    """Moses tokenization (sacremoses, no XML escaping), then lowercasing if asked."""
    tokens = _moses(language)[0].tokenize(text, escape=False)
    return [t.lower() for t in tokens] if lowercase else tokens


def detokenize(tokens: list[str], language: str) -> str:
    return _moses(language)[1].detokenize(tokens)


def reverse_source(tokens: list) -> list:
    """Sutskever et al. 2014, Sec. 3.3: feed the source words in reverse order (the target is untouched),
    so the first target words are close in time to the source words they translate."""
    return list(reversed(tokens))


def encode_source(tokens: list[str], vocabulary: Vocabulary, reverse: bool) -> list[int]:
    ids = vocabulary.encode(tokens)
    return reverse_source(ids) if reverse else ids
