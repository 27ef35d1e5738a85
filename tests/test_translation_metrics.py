"""Corpus BLEU in both conventions, against sacrebleu's documented example and Moses' multi-bleu.perl."""

from __future__ import annotations

import pytest

from repro.errors import UserError
from repro.metrics.translation import multi_bleu, sacrebleu_score

# The example of sacrebleu's README ("Using SacreBLEU from Python"), per hypothesis here.
SYSTEM = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFERENCES = [["The dog bit the man.", "The dog had bit the man."],
              ["It was not unexpected.", "No one was surprised."],
              ["The man bit him first.", "The man had bitten the dog."]]


def test_sacrebleu_score_matches_the_documented_example():
    result = sacrebleu_score(SYSTEM, REFERENCES)
    assert round(result["bleu"], 2) == 48.53  # README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)
    assert [round(p, 1) for p in result["precisions"]] == [82.4, 50.0, 45.5, 37.5]
    assert round(result["brevity_penalty"], 3) == 0.943
    assert result["signature"].startswith("BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert result["scale"] == "0-100"


def test_a_missing_reference_is_sacrebleus_variable_number_of_references():
    references = [REFERENCES[0][1:], *REFERENCES[1:]]  # the README drops the first sentence's first reference
    result = sacrebleu_score(SYSTEM, references)
    assert round(result["bleu"], 2) == 29.44  # README: BLEU = 29.44 82.4/42.9/27.3/12.5
    assert "nrefs:var" in result["signature"]


def test_multi_bleu_of_tokenized_text_equals_sacrebleu_of_the_detokenized_text():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenize = Tokenizer13a()
    result = multi_bleu([tokenize(s) for s in SYSTEM], [[tokenize(r) for r in refs] for refs in REFERENCES])
    assert result["bleu"] == pytest.approx(sacrebleu_score(SYSTEM, REFERENCES)["bleu"], abs=1e-9)
    assert result["signature"].startswith("BLEU|nrefs:2|case:mixed|eff:no|tok:none|smooth:none|version:")


@pytest.mark.parametrize("hypotheses, references, perl_bleu", [
    # Each value is what Moses' scripts/generic/multi-bleu.perl printed for the same files.
    (["a man rides a horse on the beach .", "two dogs play in the snow", "the child is eating ice cream"],
     [["a man is riding a horse on the beach .", "a man rides his horse along the beach"],
      ["two dogs are playing in the snow .", "dogs playing in snow"],
      ["a child eats an ice cream cone", "the kid is eating ice cream"]], 59.1343),  # a length tie: the shorter
    (["dogs play snow the in", "horse a rides man"], ["two dogs play in the snow", "a man rides a horse"], 0.0),
    (["The Dog runs .", "a cat sleeps ."], ["the dog runs .", "a cat sleeps ."], 59.4604),  # case-sensitive
])
def test_multi_bleu_matches_multi_bleu_perl(hypotheses, references, perl_bleu):
    assert round(multi_bleu(hypotheses, references)["bleu"], 4) == perl_bleu


def test_no_smoothing_in_multi_bleu_but_sacrebleu_smooths():
    hypotheses, references = ["dogs play snow the in"], ["two dogs play in the snow"]
    assert multi_bleu(hypotheses, references)["bleu"] == 0.0
    assert sacrebleu_score(hypotheses, references)["bleu"] > 0.0


@pytest.mark.parametrize("hypotheses, references, message", [
    ([], [], "empty"),
    (["a b"], [], "1 hypotheses but 0 references"),
    (["a b", 3], ["a b", "c"], "hypothesis 1"),
    (["a b"], [[]], "references of hypothesis 0"),
])
def test_bad_input_is_a_user_error(hypotheses, references, message):
    with pytest.raises(UserError, match=message):
        multi_bleu(hypotheses, references)


def test_lowercase_scores_are_case_insensitive_and_say_so():
    hypotheses, references = ["The Dog runs .", "a cat sleeps ."], ["the dog runs .", "a cat sleeps ."]
    assert multi_bleu(hypotheses, references, lowercase=True)["bleu"] == pytest.approx(100.0)  # multi-bleu.perl -lc
    assert round(multi_bleu(hypotheses, references)["bleu"], 4) == 59.4604  # case-sensitive, as perl without -lc
    lowercased = sacrebleu_score(SYSTEM, REFERENCES, lowercase=True)
    assert lowercased["signature"].startswith("BLEU|nrefs:2|case:lc|eff:no|tok:13a|smooth:exp|version:")
    assert lowercased["bleu"] == pytest.approx(sacrebleu_score([s.lower() for s in SYSTEM],
                                                               [[r.lower() for r in refs] for refs in REFERENCES])["bleu"])
    assert "case:lc" in multi_bleu(hypotheses, references, lowercase=True)["signature"]
