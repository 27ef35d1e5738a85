"""Video to text: frame sampling and mean pooling by hand, undecodable videos, MSVD's formats and split,
the network, the transfer from image captions, and the paper end to end on the embedded clips."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import score_without_java, shared_cache_dir, shared_data

from repro.app.cli import main

SMOKE = ["--preset", "smoke", "--no-progress", "--accelerator", "cpu", "--devices", "1"]


def write_video(path: Path, frames: int, size: int = 32, value=lambda t: (10 * t) % 250) -> Path:
    """An MPEG-4 clip whose frame t is a flat grey of ``value(t)`` (10 t): each kept frame can be recognised."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for t in range(frames):
            frame = np.full((size, size, 3), value(t), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- frames: sampling, decoding, pooling --------------------------------------------------------------------

def test_one_frame_in_step_is_kept_and_max_frames_spreads_them():
    from repro.captioning.video import sampled_frame_indices

    assert sampled_frame_indices(41, 10) == [0, 10, 20, 30, 40]
    assert sampled_frame_indices(40, 10) == [0, 10, 20, 30]
    assert sampled_frame_indices(7, 10) == [0]  # a short clip still gives its first frame
    assert sampled_frame_indices(100, 10, max_frames=4) == [0, 30, 60, 90]  # first and last kept, evenly between
    assert sampled_frame_indices(100, 10, max_frames=1) == [40]  # the middle one of 0..90
    assert sampled_frame_indices(30, 10, max_frames=5) == [0, 10, 20]  # fewer than max_frames: all
    assert sampled_frame_indices(0, 10) == []


def test_decoding_keeps_the_sampled_frames_in_order(tmp_path):
    from repro.captioning.video import decode_frames

    clip = write_video(tmp_path / "ramp.mp4", frames=25)
    indices, frames = decode_frames(clip, step=10)
    assert indices == [0, 10, 20]
    # frame t is grey 10 t: the kept frames are the right ones, in time order
    assert [round(float(np.asarray(f).mean()) / 10) for f in frames] == [0, 10, 20]
    assert frames[0].size == (32, 32) and frames[0].mode == "RGB"


def test_mean_pooling_by_hand():
    from repro.captioning.video import mean_pool, pad_frames

    visual = pad_frames([torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.tensor([[5.0, 5.0]]),
                         torch.tensor([[0.0, 3.0], [3.0, 0.0], [6.0, 6.0]])])
    assert visual.kind == "frames" and visual.features.shape == (3, 3, 2) and visual.lengths.tolist() == [2, 1, 3]
    assert visual.features[1, 1:].abs().sum() == 0  # padding
    assert mean_pool(visual.features, visual.lengths).tolist() == [[2.0, 4.0], [5.0, 5.0], [3.0, 3.0]]


def test_undecodable_empty_and_missing_videos_are_named_and_counted(tmp_path, capsys):
    from datamodules.captioning.video import decode_to_frame_files
    from repro.errors import UserError

    good = write_video(tmp_path / "good.mp4", frames=12)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[:40] + bytes(range(256)) * 8)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    clips = {"a": good, "b": corrupt, "c": empty, "d": tmp_path / "missing.avi", "e": text}
    frames, failed = decode_to_frame_files("toy", clips, step=10, max_frames=0, progress=False)
    assert list(frames) == ["a"] and [file.name for _, file in frames["a"]] == ["000000.jpg", "000010.jpg"]
    assert sorted(failed) == ["b", "c", "d", "e"]
    err = capsys.readouterr().err
    for name in ("corrupt.mp4", "empty.avi", "missing.avi", "notes.mp4"):
        assert name in err
    assert "4 of 5 videos could not be decoded and are left out" in err
    # decoded once: a second pass reads the frames back from the cache
    again, _ = decode_to_frame_files("toy", {"a": good}, step=10, max_frames=0, progress=False)
    assert again == {"a": frames["a"]}
    with pytest.raises(UserError, match=r"toy: none of its 2 videos could be decoded; first: .*corrupt.mp4"):
        decode_to_frame_files("toy", {"b": corrupt, "c": empty}, step=10, max_frames=0, progress=False)


def test_clip_features_keep_every_frame_and_their_mean(tmp_path):
    from datamodules.captioning.video import clip_features
    from repro.captioning.image_encoders import build_encoder

    clips = {"ramp": write_video(tmp_path / "ramp.mp4", frames=31), "short": write_video(tmp_path / "s.mp4", frames=5)}
    encoder = build_encoder("efficientnet-lite0", "random", 32)
    features = clip_features("toy", clips, encoder, step=10, progress=False)
    assert features.clip("ramp").shape == (4, 1280) and features.clip("short").shape == (1, 1280)
    assert torch.allclose(features.mean(["ramp"])[0], features.clip("ramp").mean(dim=0))
    # frames differ (the grey ramp), so their vectors do: one vector per frame, not one per clip
    assert not torch.equal(features.clip("ramp")[0], features.clip("ramp")[-1])


# --- MSVD ---------------------------------------------------------------------------------------------------

def test_msvd_split_on_the_real_caption_files():
    from datamodules.captioning.msvd import read_msvd

    folder = shared_data("msvd")
    clips = read_msvd(folder, folder / "no-videos-here")
    counts = {split: sum(c.split == split for c in clips) for split in ("train", "val", "test")}
    assert counts == {"train": 1200, "val": 100, "test": 670}
    assert [c.image_id for c in clips] == [f"vid{n}" for n in range(1, 1971)]
    assert {c.split for c in clips[1200:1300]} == {"val"} and {c.split for c in clips[1300:]} == {"test"}
    # every caption of every clip, counted independently of the reader
    for split, name in (("train", "MSVD_train.tsv"), ("val", "MSVD_val.tsv"), ("test", "MSVD_test.tsv")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        expected = sum(len([t for t in line.rsplit("\t", 1)[0].split(", ") if t.strip()]) for line in lines if line)
        assert sum(len(c.captions) for c in clips if c.split == split) == expected
    test = [c for c in clips if c.split == "test"]
    assert 35 < sum(len(c.captions) for c in test) / len(test) < 50  # about 40 references a clip
    assert clips[0].path.name == "-4wsuPCjDBc_5_15.avi" and clips[0].tokens[0][:2] == ["a", "squirrel"]


def write_corpus_csv(folder: Path, clips: list[str]) -> Path:
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "MSR Video Description Corpus.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["VideoID", "Start", "End", "WorkerID", "Source", "AnnotationTime", "Language", "Description"])
        for number, clip in enumerate(clips):
            video, start, end = clip.rsplit("_", 2)
            writer.writerow([video, start, end, 1, "clean", 10, "English", f"A man, {number}, plays a guitar."])
            writer.writerow([video, start, end, 2, "unverified", 12, "English", f"someone plays music {number}"])
            writer.writerow([video, start, end, 3, "clean", 9, "German", "Ein Mann spielt Gitarre."])
            writer.writerow([video, start, end, 4, "clean", 9, "English", ""])
    return folder / "MSR Video Description Corpus.csv"


def test_msvd_corpus_csv_keeps_english_and_takes_the_split_from_the_mapping(tmp_path):
    from datamodules.captioning.msvd import read_msvd
    from repro.errors import UserError

    names = [f"clip{n:04d}_{n}_{n + 5}" for n in range(1, 1971)]
    folder = tmp_path / "msvd"
    write_corpus_csv(folder, names[:1202] + names[1300:1302])
    with pytest.raises(UserError, match="1204 clips with English descriptions, not the corpus's 1970"):
        read_msvd(folder, folder / "YouTubeClips")
    (folder / "youtube_mapping.txt").write_text("".join(f"{n} vid{i}\n" for i, n in enumerate(names, start=1)))
    clips = read_msvd(folder, folder / "YouTubeClips")
    assert [(c.image_id, c.split) for c in clips[1199:]] == [("vid1200", "train"), ("vid1201", "val"),
                                                             ("vid1202", "val"), ("vid1301", "test"), ("vid1302", "test")]
    assert clips[0].captions == ["A man, 0, plays a guitar.", "someone plays music 0"]  # English, non-empty, commas kept
    assert clips[0].path == folder / "YouTubeClips" / f"{names[0]}.avi"
    # without the mapping, all 1970 clips: vidN is the sorted order of the clip names
    (folder / "youtube_mapping.txt").unlink()
    write_corpus_csv(folder, list(reversed(names)))
    clips = read_msvd(folder, folder / "YouTubeClips")
    assert clips[0].path.name == f"{names[0]}.avi" and clips[1969].image_id == "vid1970"


def test_msvd_tsv_errors_name_file_and_line(tmp_path):
    from datamodules.captioning.msvd import read_msvd_tsv
    from repro.errors import UserError

    folder = tmp_path / "msvd"
    folder.mkdir()
    (folder / "youtube_mapping.txt").write_text("a_1_2 vid1\nb_1_2 vid1201\nc_1_2 vid1301\n")
    (folder / "MSVD_train.tsv").write_text("a cat, a dog\ta_1_2\r\n")
    (folder / "MSVD_val.tsv").write_text("a man\tc_1_2\r\n")
    (folder / "MSVD_test.tsv").write_text("a bird\tc_1_2\r\n")
    with pytest.raises(UserError, match=r"MSVD_val.tsv:1: clip c_1_2 is vid1301, which belongs to the test split"):
        read_msvd_tsv(folder, folder)
    (folder / "MSVD_val.tsv").write_text("no tab on this line\r\n")
    with pytest.raises(UserError, match=r"MSVD_val.tsv:1: expected"):
        read_msvd_tsv(folder, folder)


# --- the network --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("visual_into", ["second", "first"])
def test_stepwise_decoding_matches_the_sequence_and_the_video_enters_every_step(visual_into):
    from papers.venugopalan2014 import MeanPoolVideoToText

    torch.manual_seed(0)
    network = MeanPoolVideoToText(visual_dim=6, vocabulary_size=9, embedding_size=5, hidden_size=7,
                                  visual_into=visual_into).eval()
    video, captions = torch.randn(2, 6), torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    logits = network(video, captions)
    assert logits.shape == (2, 4, 9)
    state = network.start(video)
    for t in range(captions.shape[1]):
        log_probs, state = network.step(captions[:, t], state)
        assert torch.allclose(log_probs, F.log_softmax(logits[:, t], dim=-1), atol=1e-5)
    # a static input: the same words with another video change the prediction at every position,
    # and the second layer receives it (factored) or the first one does (unfactored)
    other = network(video + 1, captions)
    assert all(not torch.allclose(logits[:, t], other[:, t]) for t in range(4))
    assert network.lstm2.input_size == 7 + (6 if visual_into == "second" else 0)
    assert network.lstm1.input_size == 5 + (6 if visual_into == "first" else 0)
    assert all(p.abs().max() <= 0.08 for n, p in MeanPoolVideoToText(6, 9).named_parameters())


def module(vocabulary_words, **config):
    from papers.venugopalan2014 import Venugopalan2014, Venugopalan2014Config
    from repro.config import config_to_dict

    words = ["<pad>", "<start>", "<end>", "<unk>", *vocabulary_words]
    vocabulary = {"words": words, "counts": [0] * 4 + [3] * len(vocabulary_words), "unknown": "<unk>"}
    base = {"embedding_size": 4, "hidden_size": 5, "encoder": "efficientnet-lite0"}
    return Venugopalan2014(config_to_dict(Venugopalan2014Config(**{**base, **config})), vocabulary,
                           visual_dim=config.pop("visual_dim", 3))


def test_visual_context_mean_middle_frame_none_and_images():
    from repro.captioning.module import Visual

    frames = Visual("frames", torch.tensor([[[1.0, 0, 0], [3.0, 2, 0], [0, 0, 0]], [[4.0, 4, 4], [0, 0, 0], [2, 2, 2]]]),
                    lengths=torch.tensor([2, 3]))
    assert module(["a"]).visual_context(frames).tolist() == [[2.0, 1.0, 0.0], [2.0, 2.0, 2.0]]
    assert module(["a"], visual_input="middle-frame").visual_context(frames).tolist() == [[1.0, 0, 0], [0, 0, 0]]
    assert module(["a"], visual_input="none").visual_context(frames).shape == (2, 0)
    assert module(["a"]).visual_context(Visual("pooled", torch.ones(2, 3))).tolist() == [[1.0] * 3] * 2


def test_training_loss_is_the_mean_word_nll_times_the_loss_weight():
    from repro.captioning.module import CaptionBatch, Visual

    net = module(["a", "b"], dropout=0.0).eval()
    batch = CaptionBatch(["x", "y"], torch.tensor([0, 1]), Visual("frames", torch.randn(2, 2, 3), lengths=torch.tensor([2, 1])),
                         torch.tensor([[1, 4, 5, 2], [1, 4, 2, 0]]), torch.tensor([0, 1]))
    nll = net.caption_negative_log_likelihood(net.visual_context(batch.visual), batch)
    assert torch.allclose(net.training_step(batch, 0), 20 * nll.sum() / 5)  # 5 scored words: a b <end>, a <end>


def test_transfer_from_an_image_run_copies_lstms_and_shared_words(tmp_path):
    from papers.venugopalan2014 import transfer_from_image_run
    from repro.errors import UserError

    torch.manual_seed(1)
    image_run = module(["a", "dog", "runs"])
    checkpoint = tmp_path / "image.ckpt"
    torch.save({"hyper_parameters": dict(image_run.hparams), "state_dict": image_run.state_dict()}, checkpoint)
    video_run = module(["a", "cat", "runs", "left"])
    before = video_run.network.word_embedding.weight.detach().clone()
    summary = transfer_from_image_run(video_run, str(checkpoint))
    assert "6 of this run's 8 words (of its 7) carried over" in summary  # 4 specials, a, runs
    new, old = video_run.network, image_run.network
    assert torch.equal(new.lstm1.weight_hh_l0, old.lstm1.weight_hh_l0) and torch.equal(new.lstm2.weight_ih_l0, old.lstm2.weight_ih_l0)
    index_new, index_old = video_run.vocabulary.index, image_run.vocabulary.index
    for word in ("<start>", "a", "runs"):
        assert torch.equal(new.word_embedding.weight[index_new(word)], old.word_embedding.weight[index_old(word)])
        assert torch.equal(new.output.bias[index_new(word)], old.output.bias[index_old(word)])
    for word in ("cat", "left"):  # not in the image run: keeps its own initialisation
        assert torch.equal(new.word_embedding.weight[index_new(word)], before[index_new(word)])
    with pytest.raises(UserError, match="hidden_size=5, this run 6; they must match"):
        transfer_from_image_run(module(["a"], hidden_size=6), str(checkpoint))
    torch.save({"hyper_parameters": {"paper": "vinyals2014", "config": {}}, "state_dict": {}}, tmp_path / "nic.ckpt")
    with pytest.raises(UserError, match="a checkpoint of 'vinyals2014'; the transfer needs venugopalan2014's own"):
        transfer_from_image_run(video_run, str(tmp_path / "nic.ckpt"))


def test_attribute_accuracy_by_hand():
    from repro.captioning.attributes import attribute_accuracy

    truth = {"objects": [{"colour": "red", "kind": "square", "direction": "left"}]}
    scores = attribute_accuracy({"a": "a red square moves to the left", "b": "a red circle heading rightward",
                                 "c": "a red or blue square moves left", "d": ""},
                                {"a": truth, "b": truth, "c": truth, "d": truth, "e": truth})
    assert scores == {"colour_accuracy": 50.0, "kind_accuracy": 50.0, "direction_accuracy": 50.0}
    assert attribute_accuracy({"a": "x"}, {"a": {"objects": [{"colour": "red", "kind": "circle"}]}}) == {}


# --- end to end -----------------------------------------------------------------------------------------------

def write_small_msvd(root: Path) -> Path:
    """MSVD's real formats with a handful of clips (captions only: no videos)."""
    folder = root / "msvd"
    folder.mkdir(parents=True)
    names = [f"clip{n:04d}_{n}_{n + 5}" for n in range(1, 1971)]
    (folder / "youtube_mapping.txt").write_text("".join(f"{n} vid{i}\r\n" for i, n in enumerate(names, start=1)))
    captions = ["a man is playing a guitar", "a man plays guitar", "someone is playing music",
                "a woman is slicing an onion", "a woman cuts an onion", "a cat is playing"]
    for name, numbers in (("MSVD_train.tsv", range(1, 9)), ("MSVD_val.tsv", (1201, 1202)), ("MSVD_test.tsv", (1301, 1302))):
        (folder / name).write_text("".join(f"{', '.join(captions[n % 2 * 3:n % 2 * 3 + 3])}\t{names[n - 1]}\r\n"
                                           for n in numbers))
    return root


def test_language_only_trains_on_msvd_captions_without_any_video(tmp_path, capsys, monkeypatch):
    root = write_small_msvd(tmp_path / "data")
    score_without_java(monkeypatch)
    assert main(["run", "venugopalan2014", *SMOKE, "--data", "msvd", "--data-dir", str(root), "--set", "visual_input=none",
                 "--set", "min_word_count=1", "--set", "batch_size=8", "--max-epochs", "1", "--out", str(tmp_path / "out"),
                 "--results", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "CAPTIONS ONLY: msvd's 12 clips are used for their captions; no video is read" in printed
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert record["data_source"] == "real" and record["config"]["visual_input"] == "none"
    assert record["global_step"] == 3  # 24 training captions in batches of 8: it trained
    assert "test/bleu_4" in record["metrics"] and not any("@" in key for key in record["metrics"])
    # with the videos required, their absence is one line naming the folder looked in
    assert main(["run", "venugopalan2014", *SMOKE, "--data", "msvd", "--data-dir", str(root)]) == 2
    assert "msvd: no images folder under" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from conftest import sandboxed_run

    root = tmp_path_factory.mktemp("venugopalan")
    return root, sandboxed_run(root, ["venugopalan2014", *SMOKE])


def test_smoke_run_records_model_baseline_and_attribute_accuracy(smoke_run):
    root, record = smoke_run
    assert record["dataset"] == "motion" and record["data_source"] == "embedded sample"
    metrics = record["metrics"]
    for name in ("bleu_4", "cider_d", "ppl", "direction_accuracy", "colour_accuracy", "kind_accuracy"):
        assert f"test/{name}" in metrics
    assert metrics["test/cider_d@nearest-neighbour"] > 0 and "test/direction_accuracy@nearest-neighbour" in metrics
    assert any("val/cider_d" in h for h in record["history"])
    example = record["examples"][0]
    assert example["media"].endswith(".mp4") and example["baselines"]["nearest-neighbour"]
    captions = json.loads((Path(record["run_dir"]) / "test_captions.json").read_text())
    assert len(captions) == 60  # every test clip, once


def test_caption_command_describes_a_video_file_and_the_table_has_the_row(smoke_run, capsys):
    from datamodules.captioning.motion_sample import generate

    root, record = smoke_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        clip = str(generate() / record["examples"][0]["media"])
        assert main(["caption", "--ckpt", record["best_checkpoint"], clip, "--figure", str(root / "clip.png")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"{clip}:") and (root / "clip.png").stat().st_size > 3000
        broken = root / "broken.mp4"
        broken.write_bytes(b"\x00" * 100)
        assert main(["caption", "--ckpt", record["best_checkpoint"], str(broken)]) == 2
        assert "broken.mp4: cannot be decoded" in capsys.readouterr().err
        assert main(["table", "--results", str(root / "results")]) == 0
    table = (root / "results" / "venugopalan2014.md").read_text()
    assert "embedded sample" in table and "preset `smoke`" in table and "baseline: nearest-neighbour" in table
    assert "LSTM-YT_coco+flickr" in table and "NOT checked" in table
    assert (root / "results" / "venugopalan2014_motion_examples.png").stat().st_size > 10_000
