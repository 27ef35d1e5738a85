"""Show and Tell: the network's equations, the retrieval baseline, and the paper end to end on the sample."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import score_without_java, shared_cache_dir

from papers.vinyals2014 import ShowAndTellNetwork
from repro.app.cli import main
from repro.captioning.retrieval import consensus_caption, nearest_neighbour_captions

SMOKE = ["--preset", "smoke", "--no-progress", "--accelerator", "cpu", "--devices", "1"]


def test_image_enters_once_before_the_words_and_steps_match_the_sequence():
    torch.manual_seed(0)
    network = ShowAndTellNetwork(feature_dim=6, vocabulary_size=9, embedding_size=5, hidden_size=7, dropout=0.0).eval()
    features, captions = torch.randn(2, 6), torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    logits = network(features, captions)
    assert logits.shape == (2, 5, 9)
    # decoding one word at a time from the state after the image gives the same distributions
    state = network.start(features)
    for t in range(captions.shape[1]):
        log_probs, state = network.step(captions[:, t], state)
        assert torch.allclose(log_probs, F.log_softmax(logits[:, t + 1], dim=-1), atol=1e-6)
    # the image is an input only once: changing it changes the first state, not the word embeddings
    assert not torch.allclose(network.start(features)[0], network.start(features + 1)[0])


def test_loss_is_the_summed_caption_negative_log_likelihood():
    from papers.vinyals2014 import Vinyals2014, Vinyals2014Config
    from repro.captioning.module import CaptionBatch, Visual
    from repro.config import config_to_dict

    vocabulary = {"words": ["<pad>", "<start>", "<end>", "<unk>", "a", "b"], "counts": [0, 0, 0, 0, 3, 3], "unknown": "<unk>"}
    config = config_to_dict(Vinyals2014Config(embedding_size=4, hidden_size=4, dropout=0.0))
    module = Vinyals2014(config, vocabulary, visual_dim=3).eval()
    features = torch.randn(2, 3)
    batch = CaptionBatch(["x", "y"], torch.tensor([0, 1]), Visual("pooled", features),
                         torch.tensor([[1, 4, 5, 2], [1, 4, 2, 0]]), torch.tensor([0, 1]))
    nll = module.caption_negative_log_likelihood(module.visual_context(batch.visual), batch)
    # by hand for caption 1: -log p(a) - log p(<end> | a), padding not scored
    log_probs = F.log_softmax(module.network(features[1:], torch.tensor([[1, 4, 2]])), dim=-1)[0]
    assert torch.allclose(nll[1], -(log_probs[1, 4] + log_probs[2, 2]), atol=1e-6)
    assert module.caption_word_counts(batch).tolist() == [3, 2]


def test_consensus_caption_is_the_one_most_like_the_others():
    pool = ["a dog runs on grass", "a dog runs on the grass", "a dog running on grass", "a red car parked"]
    assert consensus_caption(pool) in (0, 1)
    assert consensus_caption(["only one"]) == 0


def test_retrieval_baseline_returns_its_captions_with_its_scores(monkeypatch):
    score_without_java(monkeypatch)
    from pathlib import Path

    from repro.captioning.module import EvaluationSet
    from repro.captioning.retrieval import nearest_neighbour_baseline

    def split(name, ids, captions, vectors):
        return EvaluationSet("toy", name, ids, captions, [[c.lower().rstrip(".").split() for c in cs] for cs in captions],
                             ids, Path("."), torch.tensor(vectors), visual=None, annotations=[None] * len(ids))

    train = split("train", ["t1", "t2"], [["A cat sleeps."] * 2, ["A red car."] * 2], [[1.0, 0.0], [0.0, 1.0]])
    test = split("test", ["q1", "q2"], [["A cat sleeps."], ["A blue car."]], [[0.9, 0.1], [0.1, 0.8]])
    result = nearest_neighbour_baseline(train, test, k=1)
    assert result.name == "nearest-neighbour" and result.outputs == {"q1": "A cat sleeps.", "q2": "A red car."}
    assert result.metrics["test/bleu_1@nearest-neighbour"] > 50


def test_nearest_neighbour_retrieves_from_the_closest_training_images():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    captions = [[("A cat.", "a cat")] * 2, [("A car.", "a car")] * 2, [("A cat sleeps.", "a cat sleeps")] * 2]
    chosen = nearest_neighbour_captions(train, captions, torch.tensor([[0.0, 2.0], [1.0, 0.05]]), k=1)
    assert chosen == ["A car.", "A cat."]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from conftest import sandboxed_run

    root = tmp_path_factory.mktemp("vinyals")
    return root, sandboxed_run(root, ["vinyals2014", *SMOKE])


def test_smoke_run_records_model_and_baseline_metrics(smoke_run):
    root, record = smoke_run
    assert record["dataset"] == "shapes" and record["data_source"] == "embedded sample"
    metrics = record["metrics"]
    for name in ("bleu_1", "bleu_4", "rouge_l", "cider_d", "ppl"):
        assert f"test/{name}" in metrics
    # the retrieval baseline, scored on the same test images; its captions come back with its scores
    assert metrics["test/cider_d@nearest-neighbour"] > 0
    assert any("val/cider_d" in h for h in record["history"]) and any("train/ppl_epoch" in h for h in record["history"])
    example = record["examples"][0]
    assert set(example) >= {"id", "media", "generated", "baselines", "references"}
    assert example["baselines"]["nearest-neighbour"] and not Path(example["media"]).is_absolute()
    captions = json.loads((root / "out" / "vinyals2014" / record["run_dir"].split("/")[-1] / "test_captions.json").read_text())
    assert len(captions) == 60  # every test image of the sample, once
    # the config, not the vocabulary, is what the loggers get
    [hparams] = (root / "out" / "vinyals2014").glob("*/logs/version_0/hparams.yaml")
    assert "hidden_size" in hparams.read_text() and "<start>" not in hparams.read_text()


def test_caption_command_and_table(smoke_run, capsys):
    from datamodules.captioning.shapes_sample import generate

    root, record = smoke_run
    checkpoint = record["best_checkpoint"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        image = str(generate() / record["examples"][0]["media"])
        assert main(["caption", "--ckpt", checkpoint, image, image, "--beam-size", "2", "--figure",
                     str(root / "captions.png")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"{image}:") and lines[0] == lines[1] and (root / "captions.png").stat().st_size > 5000
        assert main(["caption", "--ckpt", checkpoint, str(root / "missing.jpg")]) == 2
        assert "missing.jpg" in capsys.readouterr().err
        assert main(["table", "--results", str(root / "results")]) == 0
    table = (root / "results" / "vinyals2014.md").read_text()
    assert "baseline: nearest-neighbour" in table and "vinyals2014_shapes_examples.png" in table
    assert (root / "results" / "vinyals2014_shapes_examples.png").stat().st_size > 10_000


def test_fine_tuning_trains_the_encoder_end_to_end(tmp_path):
    from test_captions import datamodule, write_flickr8k

    from papers.vinyals2014 import Vinyals2014, Vinyals2014Config
    from repro.config import config_to_dict

    data = datamodule(write_flickr8k(tmp_path), fine_tune_encoder=True)
    config = Vinyals2014Config(encoder="efficientnet-lite0", encoder_weights="random", image_size=32,
                               fine_tune_encoder=True, embedding_size=8, hidden_size=8)
    module = Vinyals2014(config_to_dict(config), data.vocabulary.to_dict(), visual_dim=data.visual_dim)
    batch = next(iter(data.train_dataloader()))
    assert batch.visual.kind == "images" and batch.visual.features.shape == (4, 3, 32, 32)  # not cached features
    module.training_step(batch, 0).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoder.parameters())
    assert len(module.configure_optimizers().param_groups) == 2  # the CNN has its own (small) rate


def test_the_record_can_be_rescored_from_its_predictions(smoke_run, capsys, monkeypatch):
    """The captions of the model and of the baseline, kept beside the record, give its metrics again
    (that a changed output is found is tested once, cheaply, in tests/test_record_checks.py)."""
    import gzip

    root, record = smoke_run
    [path] = (root / "results" / "runs").glob("*.json")
    predictions = path.with_name(path.stem + ".predictions.json.gz")
    kept = json.loads(gzip.decompress(predictions.read_bytes()))
    assert len(kept["outputs"]) == 60 and set(kept["baselines"]) == {"nearest-neighbour"}
    score_without_java(monkeypatch)  # as the run scored
    assert main(["rescore", str(path)]) == 0
    out = capsys.readouterr().out
    assert "all equal at float32 precision" in out and "test/cider_d@nearest-neighbour" in out
    assert "not determined by the outputs (not re-scored): " in out and "test/ppl" in out
