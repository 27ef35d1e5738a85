"""``python -m repro translate --ckpt A.ckpt [--ckpt B.ckpt ...] "a sentence"``: translate with trained models.

One checkpoint decodes with its own beam search; several decode as an ensemble (Sutskever et al. 2014,
Table 1: the average of the models' predicted distributions at each step, ``ensemble_step``). Each
model tokenizes and (if it was trained so) reverses the source itself, so a forward and a reversed
model can be ensembled; their target vocabularies must be the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from repro.app.checkpoints import load_module
from repro.decoding.beam_search import ensemble_step
from repro.errors import UserError
from repro.translation.module import TranslationModule


def load_translators(checkpoints: list[Path]) -> list[TranslationModule]:
    modules = [load_module(path) for path in checkpoints]
    for path, module in zip(checkpoints, modules):
        if not isinstance(module, TranslationModule):
            raise UserError(f"--ckpt {path}: {module.hparams.get('paper')} is not a translation model")
    first = modules[0].target_vocabulary.words
    for path, module in zip(checkpoints[1:], modules[1:]):
        if module.target_vocabulary.words != first:
            raise UserError(f"--ckpt {path}: its target vocabulary differs from that of {checkpoints[0]}; "
                            f"an ensemble needs the same target words in the same order")
    return modules


@torch.no_grad()
def translate(modules: list[TranslationModule], sentences: list[str], beam_size: int | None = None, batch_size: int = 32) -> list[str]:
    """Detokenized translations of ``sentences`` (beam size: the first model's config unless given)."""
    lead = modules[0]
    beam_size = beam_size or lead.config.beam_size
    if beam_size < 1:
        raise UserError(f"--beam-size {beam_size}: must be at least 1")
    translations = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        encoded = [module.encode_texts(chunk, first_number=start + 1) for module in modules]
        warn_unknown_sources(modules, chunk, start + 1)
        longest = max(length for _, length in encoded)
        if len(modules) == 1:
            step, state = lead.step_function(), encoded[0][0]
        else:
            step, state = ensemble_step([m.step_function() for m in modules]), tuple(s for s, _ in encoded)
        for tokens in lead.search(state, len(chunk), longest, step, beam_size):
            translations.append(lead.detokenize(tokens))
    return translations


def warn_unknown_sources(modules: list[TranslationModule], sentences: list[str], first_number: int) -> None:
    """A warning on stderr for each sentence with no word in a model's source vocabulary: it translates
    to an empty or meaningless line, which would otherwise pass for a translation."""
    for number, sentence in enumerate(sentences, start=first_number):
        if any(module.unknown_source(sentence) for module in modules):
            model = "the model's" if len(modules) == 1 else "a model's"
            print(f"warning: input sentence {number} has no word in {model} source vocabulary; its translation "
                  f"is meaningless (the vocabulary is the training corpus's, language "
                  f"{modules[0].config.source_language!r})", file=sys.stderr, flush=True)


def read_input(sentences: list[str], input_file: Path | None) -> list[str]:
    if input_file is not None:
        if sentences:
            raise UserError("give sentences on the command line or --input FILE, not both")
        if not input_file.is_file():
            raise UserError(f"--input {input_file}: file not found")
        try:
            lines = input_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"--input {input_file}: not valid UTF-8") from None
        empty = [number for number, line in enumerate(lines, start=1) if not line.strip()]
        if empty:
            raise UserError(f"--input {input_file}:{empty[0]}: empty line ({len(empty)} in all); one sentence per line")
        sentences = lines
    if not sentences:
        raise UserError("nothing to translate: give a sentence or --input FILE")
    return sentences


def run_translate(checkpoints: list[Path], sentences: list[str], input_file: Path | None, beam_size: int | None) -> None:
    texts = read_input(sentences, input_file)
    for line in translate(load_translators(checkpoints), texts, beam_size):
        print(line, flush=True)
