"""Does a caption name what is in the clip? Attribute words (colour, kind, direction of motion) checked
against an annotated clip's object: the embedded motion sample's measure of grounding, for any captioner."""

from __future__ import annotations

ATTRIBUTE_WORDS = {
    "colour": {c: {c} for c in ("red", "green", "blue", "yellow", "purple")},
    "kind": {k: {k} for k in ("circle", "square", "triangle")},
    "direction": {"left": {"left", "leftward"}, "right": {"right", "rightward"}, "up": {"up", "upward"},
                  "down": {"down", "downward"}},
}


def attribute_accuracy(captions: dict[str, str], annotations: dict[str, dict]) -> dict[str, float]:
    """% of clips whose caption names the clip's colour / kind / direction of motion, and no other.

    Only clips annotated with a moving object (the embedded motion sample) count; on other data this
    returns nothing. A caption that names two colours (or kinds, or directions) is wrong for that one.
    """
    scores: dict[str, list[bool]] = {name: [] for name in ATTRIBUTE_WORDS}
    for medium, annotation in annotations.items():
        if medium not in captions:
            continue
        target = annotation["objects"][0]
        if "direction" not in target:
            continue
        words = set(captions[medium].lower().replace(".", " ").split())
        for attribute, values in ATTRIBUTE_WORDS.items():
            named = {value for value, spellings in values.items() if words & spellings}
            scores[attribute].append(named == {target[attribute]})
    return {f"{attribute}_accuracy": 100.0 * sum(hits) / len(hits) for attribute, hits in scores.items() if hits}
