"""coco-caption metrics: the scale, bad input, and the Python tokenizer against Stanford's jar."""

from __future__ import annotations

import shutil
from collections import defaultdict

import pytest

from repro.errors import UserError
from repro.metrics import captions as caption_metrics
from repro.metrics.captions import human_agreement, ptb_tokenize, score_captions
from tests.conftest import shared_data

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no `java` on PATH")

DISTINCT = {  # captions sharing no word, so every n-gram has a non-zero CIDEr-D weight
    1: "a brown dog runs across green grass",
    2: "two children swim in blue water",
    3: "man riding bicycle down steep street",
}


def test_identical_captions_score_full_marks_on_the_0_100_scale():
    result = score_captions(DISTINCT, {key: [caption] for key, caption in DISTINCT.items()}, use_java=False)
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert result[name] == pytest.approx(100.0, abs=1e-5), name
    assert result["cider_d"] == pytest.approx(1000.0)  # CIDEr-D is 0-10 on its own scale, times 100
    assert (result["scale"], result["tokenizer"], result["images"], result["empty_predictions"]) == (
        "0-100", "ptb-python", 3, 0)


def test_without_java_meteor_is_unavailable_with_a_reason_and_spice_is_never_computed():
    result = score_captions(DISTINCT, {key: [caption] for key, caption in DISTINCT.items()}, use_java=False)
    assert result["meteor"] is None and result["meteor_status"].startswith("unavailable: METEOR 1.5 is a Java program")
    assert result["spice"] is None and "downloads" in result["spice_status"]


def test_an_empty_prediction_scores_zero_and_is_counted():
    references = {key: [caption] for key, caption in DISTINCT.items()}
    result = score_captions({**DISTINCT, 3: "  "}, references, use_java=False)
    assert result["empty_predictions"] == 1
    assert result["rouge_l"] == pytest.approx(200 / 3)  # two perfect captions and a zero


def test_cider_d_of_one_image_is_zero_because_its_idf_comes_from_the_corpus():
    result = score_captions({1: DISTINCT[1]}, {1: [DISTINCT[1]]}, use_java=False)
    assert result["cider_d"] == 0.0 and result["bleu_4"] == pytest.approx(100.0, abs=1e-5)


@pytest.mark.parametrize("predictions, references, message", [
    ({1: "a dog", 7: "a cat"}, {1: ["a dog"]}, "in predictions have no references: 7"),
    ({1: "a dog"}, {1: ["a dog"], "x.jpg": ["a cat"]}, "in references have no predictions: 'x.jpg'"),
    ({1: "a dog"}, {1: []}, r"references\[1\]: expected a non-empty list"),
    ({1: "a dog"}, {1: "a dog"}, r"references\[1\]: expected a non-empty list"),
    ({1: "a dog"}, {1: ["a dog", " "]}, r"references\[1\]\[1\]: reference caption is empty"),
    ({1: 42}, {1: ["a dog"]}, r"predictions\[1\]: caption must be text, got int"),
    ({1: b"\xff\xfe dog"}, {1: ["a dog"]}, r"predictions\[1\]: caption is not valid UTF-8"),
    ({1: "a \udcff dog"}, {1: ["a dog"]}, r"predictions\[1\]: caption holds undecodable characters"),
    ({}, {}, "no captions to score"),
])
def test_bad_input_is_a_user_error_naming_the_id(predictions, references, message):
    with pytest.raises(UserError, match=message):
        score_captions(predictions, references, use_java=False)


def test_asking_for_java_without_java_is_a_user_error(monkeypatch):
    monkeypatch.setattr(caption_metrics.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="no `java` is on PATH"):
        score_captions({1: "a dog"}, {1: ["a dog"]}, use_java=True)


JAVA_TOKENS = [
    # What stanford-corenlp-3.4.1.jar -preserveLines -lowerCase printed, less pycocoevalcap's punctuation.
    ("The man isn't here; they're gonna go!", "the man is n't here they 're gon na go"),
    ("we cannot say what we wanna", "we can not say what we wan na"),
    ('He said "hello" and (then) left...', "he said hello and -lrb- then -rrb- left"),
    ("A t-shirt-wearing man -- with $5.50 & 3,000 people.", "a t-shirt-wearing man with $ 5.50 & 3,000 people"),
    ("Can't cannot won't I'm we'll you'd y'all o'clock rock'n'roll 'tis '90s",
     "ca n't can not wo n't i 'm we 'll you 'd y' all o'clock rock 'n' roll 't is '90s"),
    ("The U.S. army at 5 p.m. in St. Louis.", "the u.s. army at 5 p.m. in st. louis"),
    ("a dog [running] {fast} and/or 50% 1/2 *star* #1",
     "a dog -lsb- running -rsb- -lcb- fast -rcb- and/or 50 % 1/2 * star * # 1"),
    ("dog.cat ends with a dog. Mr. Smith vs. Mrs. Jones etc.", "dog.cat ends with a dog mr. smith vs. mrs. jones etc."),
    ("wow!!! no?? 1-2 2-year-old 10:30 a.m", "wow !!! no ?? 1-2 2-year-old 10:30 a.m"),
    ("Texas A&amp;M's player; a man ill. Ill.", "texas a&m 's player a man ill ill."),
    ("don\u2019t \u201cquoted\u201d \u2018single\u2019 \u2026 emoji \U0001f600 ok", "do n't quoted single emoji ok"),
]


@pytest.mark.parametrize("caption, java_tokens", JAVA_TOKENS)
def test_python_tokenizer_reproduces_the_java_tokenizer(caption, java_tokens):
    assert ptb_tokenize({1: [caption]}, use_java=False) == {1: [java_tokens]}


@needs_java
def test_the_expected_tokens_are_what_the_jar_prints():
    captions = {index: [caption] for index, (caption, _) in enumerate(JAVA_TOKENS)}
    assert ptb_tokenize(captions, use_java=True) == {index: [tokens] for index, (_, tokens) in enumerate(JAVA_TOKENS)}


def test_human_agreement_holds_out_each_caption_in_turn():
    references = {1: ["a dog runs on grass", "a brown dog runs"], 2: ["two kids swim", "children swim in a pool"]}
    rounds = [score_captions({key: texts[k] for key, texts in references.items()},
                             {key: texts[:k] + texts[k + 1:] for key, texts in references.items()}, use_java=False)
              for k in range(2)]
    result = human_agreement(references, use_java=False)
    assert result["rounds"] == 2
    for name in ("bleu_1", "bleu_4", "rouge_l", "cider_d"):
        assert result[name] == pytest.approx((rounds[0][name] + rounds[1][name]) / 2)


def flickr8k_test_references() -> dict[str, list[str]]:
    folder = shared_data("flickr8k_text")
    test_images = set((folder / "Flickr_8k.testImages.txt").read_text(encoding="utf-8").split())
    references = defaultdict(list)
    for line in (folder / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t")
        if key.split("#")[0] in test_images:
            references[key.split("#")[0]].append(caption)
    return dict(references)


@pytest.fixture(scope="module")
def flickr8k_tokenized():
    references = flickr8k_test_references()
    return references, ptb_tokenize(references, use_java=True), ptb_tokenize(references, use_java=False)


@pytest.mark.realdata
@needs_java
def test_python_and_java_tokenizers_agree_on_every_flickr8k_test_caption(flickr8k_tokenized):
    references, java, python = flickr8k_tokenized
    assert sum(map(len, references.values())) == 5000
    disagreements = [(key, a, b) for key in references for a, b in zip(java[key], python[key]) if a != b]
    assert disagreements == []


@pytest.mark.realdata
@needs_java
def test_python_and_java_tokens_give_the_same_flickr8k_bleu_and_cider_d(flickr8k_tokenized):
    _, java, python = flickr8k_tokenized

    def human_round_0(tokenized):  # caption 0 of each image against the other four
        return caption_metrics._score_tokenized({key: texts[1:] for key, texts in tokenized.items()},
                                                {key: texts[:1] for key, texts in tokenized.items()}, meteor=None)

    java_scores, python_scores = human_round_0(java), human_round_0(python)
    assert java_scores == python_scores
    assert 55 < java_scores["bleu_1"] < 75 and 50 < java_scores["cider_d"] < 120  # how much people agree


@pytest.mark.slow
@pytest.mark.realdata
@needs_java
def test_score_captions_with_java_and_meteor_on_flickr8k():  # METEOR 1.5 loads its paraphrase table: ~15 s
    references = flickr8k_test_references()
    predictions = {key: texts[0] for key, texts in references.items()}
    others = {key: texts[1:] for key, texts in references.items()}
    java = score_captions(predictions, others, use_java=True)
    python = score_captions(predictions, others, use_java=False)
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"):
        assert java[name] == python[name], name
    assert java["tokenizer"] == "ptb-java" and java["meteor_status"] == "computed" and 15 < java["meteor"] < 40
