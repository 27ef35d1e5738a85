"""The embedded translation sample: a synthetic English->French pair made by the suite, never downloaded.

Sentences join one to three clauses, "det [adj] noun [adverb] verb det [adj] noun [prep det [adj] noun]",
so they run from 6 to about 40 words. The translation is word for word with French's local
reorderings: adjectives follow the noun, an adverb follows the verb, and determiners and adjectives
agree in gender with a noun that comes after them in English. Every target word depends on a source
word at about the same position, so a forward encoder must carry the first source words through the
whole sentence before the decoder needs them, while a reversed source puts them next to the first
target words: reversal helps from the first minutes on a CPU, as in Sutskever et al. 2014 Sec. 3.3.
What the ``sample`` preset measures on it, both source orders, is in ``results/sutskever2014.md``.

The text is generated deterministically from a seed and written as line-aligned parallel files
(``train.en``/``train.fr``, ...), so the real loading path (tokenization included) reads it.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from datamodules.catalog import cache_dir, register_dataset
from datamodules.translation.parallel_text import ParallelTextSpec, line_aligned

SAMPLE_NAME = "translation-sample"
VERSION = 1
PAIRS = {"train": 12000, "valid": 500, "test": 500}
SEED = 2014

NOUNS = {  # English -> (French, gender)
    "cat": ("chat", "m"), "dog": ("chien", "m"), "bird": ("oiseau", "m"), "man": ("homme", "m"),
    "tree": ("arbre", "m"), "book": ("livre", "m"), "house": ("maison", "f"), "car": ("voiture", "f"),
    "woman": ("femme", "f"), "city": ("ville", "f"), "door": ("porte", "f"), "table": ("table", "f"),
}
ADJECTIVES = {  # English -> (masculine, feminine)
    "big": ("grand", "grande"), "small": ("petit", "petite"), "green": ("vert", "verte"),
    "happy": ("heureux", "heureuse"), "red": ("rouge", "rouge"), "black": ("noir", "noire"),
}
DETERMINERS = {"the": ("le", "la"), "a": ("un", "une"), "this": ("ce", "cette")}
VERBS = {"sees": "voit", "likes": "aime", "follows": "suit", "finds": "trouve", "watches": "regarde",
         "paints": "peint"}
ADVERBS = {"often": "souvent", "never": "jamais", "always": "toujours", "quickly": "vite"}
PREPOSITIONS = {"near": ["près", "de"], "behind": ["derrière"], "with": ["avec"], "under": ["sous"]}
CONJUNCTIONS = {"and": "et", "but": "mais", "while": "pendant que"}


def noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    noun = rng.choice(list(NOUNS))
    french_noun, gender = NOUNS[noun]
    which = 0 if gender == "m" else 1
    determiner = rng.choice(list(DETERMINERS))
    adjectives = rng.sample(list(ADJECTIVES), rng.choice([0, 0, 1, 1, 2]))
    english = [determiner, *adjectives, noun]
    french = [DETERMINERS[determiner][which], french_noun, *(ADJECTIVES[a][which] for a in adjectives)]
    return english, french


def clause(rng: random.Random) -> tuple[list[str], list[str]]:
    subject_en, subject_fr = noun_phrase(rng)
    object_en, object_fr = noun_phrase(rng)
    verb = rng.choice(list(VERBS))
    english, french = list(subject_en), list(subject_fr)
    if rng.random() < 0.4:  # English puts the adverb before the verb, French after it
        adverb = rng.choice(list(ADVERBS))
        english += [adverb, verb]
        french += [VERBS[verb], ADVERBS[adverb]]
    else:
        english.append(verb)
        french.append(VERBS[verb])
    english += object_en
    french += object_fr
    if rng.random() < 0.5:
        preposition = rng.choice(list(PREPOSITIONS))
        place_en, place_fr = noun_phrase(rng)
        english += [preposition, *place_en]
        french += [*PREPOSITIONS[preposition], *place_fr]
    return english, french


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    english, french = clause(rng)
    for _ in range(rng.choice([0, 1, 1, 2])):
        conjunction = rng.choice(list(CONJUNCTIONS))
        more_en, more_fr = clause(rng)
        english += [conjunction, *more_en]
        french += [*CONJUNCTIONS[conjunction].split(), *more_fr]
    return " ".join(english) + " .", " ".join(french) + " ."


def generate(root: Path | None = None) -> Path:
    """Write the sample once (atomically) and return its folder; later calls reuse it."""
    folder = (root or cache_dir() / "samples") / f"{SAMPLE_NAME}-v{VERSION}"
    if all((folder / f"{split}.{language}").is_file() for split in PAIRS for language in ("en", "fr")):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    for offset, (split, count) in enumerate(PAIRS.items()):
        rng = random.Random(SEED + offset)
        pairs = [sentence_pair(rng) for _ in range(count)]
        (staging / f"{split}.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
        (staging / f"{split}.fr").write_text("".join(fr + "\n" for _, fr in pairs), encoding="utf-8")
    try:
        os.replace(staging, folder)  # two processes racing: one wins, the other's copy is dropped
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


register_dataset(ParallelTextSpec(
    name=SAMPLE_NAME,
    description="embedded sample: synthetic English->French with gender agreement and local reordering, "
                "6-40 words, generated by the suite (12000/500/500 pairs)",
    folder="",
    required_files=tuple(f"{split}.{language}" for split in PAIRS for language in ("en", "fr")),
    license="generated by this project",
    generate=generate,
    reader=line_aligned(SAMPLE_NAME, ("train",), ("valid",), ("en", "fr")),
    languages=("en", "fr"),
    test_sets={"test": ("en", "fr")},
))
