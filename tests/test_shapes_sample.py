"""The compositional shapes sample: deterministic, held-out pairs where documented, captions true to their
images, boxes on the drawn objects."""

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from datamodules import shapes_sample as shapes
from datamodules.captioning.captions import tokenize_caption


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = shapes.generate(tmp_path_factory.mktemp("shapes"))
    return folder, json.loads((folder / "dataset_shapes.json").read_text())


def digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def test_same_bytes_every_time(sample, tmp_path):
    folder, _ = sample
    again = shapes.generate(tmp_path)
    assert digest(again) == digest(folder)
    assert shapes.generate(tmp_path) == again  # written once, then reused


def test_split_sizes_and_karpathy_format(sample):
    folder, data = sample
    assert Counter(e["split"] for e in data["images"]) == shapes.SPLIT_SIZES
    for entry in data["images"]:
        assert (folder / entry["filepath"] / entry["filename"]).is_file()
        assert len(entry["sentences"]) == 5 and len({s["raw"] for s in entry["sentences"]}) == 5
        assert all(s["tokens"] == tokenize_caption(s["raw"]) for s in entry["sentences"])
        assert f"shapes{shapes.VERSION}_" in entry["filename"]  # no older feature cache matches these ids
    scenes = Counter((e["split"], e["scene"]) for e in data["images"])
    assert scenes == {(split, scene): round(share * count) for split, count in shapes.SPLIT_SIZES.items()
                      for scene, share in shapes.SCENE_KINDS.items()}


def pairs(entry):
    return {(o["colour"], o["kind"]) for o in entry["objects"]}


def test_held_out_pairs_only_in_validation_and_test(sample):
    _, data = sample
    assert sorted(map(tuple, data["held_out_pairs"])) == sorted(shapes.HELD_OUT)
    train = [e for e in data["images"] if e["split"] == "train"]
    assert not any(pairs(e) & shapes.HELD_OUT for e in train)
    for entry in data["images"]:
        if entry["split"] != "train":
            assert pairs(entry) & shapes.HELD_OUT, entry["filename"]
    seen = set().union(*(pairs(e) for e in train))
    assert seen == {(c, k) for c in shapes.COLOURS for k in shapes.KINDS} - shapes.HELD_OUT
    # every held-out pair is tested, each colour and kind held out at most once
    held = set().union(*(pairs(e) & shapes.HELD_OUT for e in data["images"] if e["split"] == "test"))
    assert held == shapes.HELD_OUT
    assert len({c for c, _ in shapes.HELD_OUT}) == len({k for _, k in shapes.HELD_OUT}) == len(shapes.HELD_OUT)


POSITION_WORDS = {"left", "right", "middle"}
VERTICAL_WORDS = {"above", "below", "over", "top", "bottom"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3}


def test_captions_name_only_what_is_in_the_image(sample):
    _, data = sample
    singular = {p: k for k, p in shapes.PLURALS.items()}
    for entry in data["images"]:
        objects = entry["objects"]
        for sentence in entry["sentences"]:
            words = sentence["tokens"]
            assert set(shapes.named_pairs(sentence["raw"])) <= pairs(entry), sentence["raw"]
            assert {w for w in words if w in shapes.COLOURS} <= {o["colour"] for o in objects}
            kinds = {singular.get(w, w) for w in words} & set(shapes.KINDS)
            assert kinds <= {o["kind"] for o in objects}
            assert {w for w in words if w in shapes.SIZES} <= {o["size"] for o in objects}
            numbers = {NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS}
            assert numbers <= {len(objects)}, sentence["raw"]
            if entry["scene"] == "single":
                assert POSITION_WORDS & set(words) <= {entry["position"]} and not VERTICAL_WORDS & set(words)
            elif entry["scene"] == "pair" and entry["relation"] == "above":
                assert not POSITION_WORDS & set(words)
            else:
                assert not VERTICAL_WORDS & set(words)
        # the five references together describe every object's colour and kind, and its size
        described = set().union(*(set(shapes.named_pairs(s["raw"])) for s in entry["sentences"]))
        assert described == pairs(entry)
        assert {o["size"] for o in objects} <= {w for s in entry["sentences"] for w in s["tokens"]}


def test_left_and_above_follow_the_boxes(sample):
    _, data = sample
    for entry in data["images"]:
        boxes = [o["box"] for o in entry["objects"]]
        if entry.get("relation") == "left of":
            assert boxes[0][2] <= boxes[1][0]
        elif entry.get("relation") == "above":
            assert boxes[0][3] <= boxes[1][1]
        elif entry["scene"] == "single":
            x0, _, x1, _ = boxes[0]
            if entry["position"] == "left":
                assert x1 <= 121  # the whole object left of the middle band
            elif entry["position"] == "right":
                assert x0 >= 135
            else:
                assert abs((x0 + x1) / 2 - shapes.IMAGE_SIZE / 2) <= 22


def test_boxes_lie_on_their_objects(sample):
    """Each box bounds its object's pixels: none outside it, and some near each of its edges (thin
    points such as a star's lose a few pixels' colour to JPEG)."""
    from PIL import Image

    folder, data = sample
    low, high = shapes.SAFE_AREA
    for entry in data["images"][::5]:
        pixels = np.asarray(Image.open(folder / entry["filepath"] / entry["filename"]).convert("RGB")).astype(int)
        assert pixels.shape == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3)
        painted = np.zeros(pixels.shape[:2], bool)
        for shape in entry["objects"]:
            x0, y0, x1, y1 = shape["box"]
            assert low <= x0 < x1 <= high + 1 and low <= y0 < y1 <= high + 1  # inside the encoder's centre crop
            near = np.abs(pixels - np.array(shapes.COLOURS[shape["colour"]])).max(axis=2) < 80
            assert near[y0:y1, x0:x1].mean() > 0.25, (entry["filename"], shape)  # mostly the object
            around = np.zeros_like(near)
            around[y0 - 3:y1 + 3, x0 - 3:x1 + 3] = near[y0 - 3:y1 + 3, x0 - 3:x1 + 3]  # objects are 6 apart
            ys, xs = np.nonzero(around)
            drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert (np.abs(drawn - shape["box"]) <= 7).all() and drawn[0] >= x0 - 1 and drawn[1] >= y0 - 1 \
                and drawn[2] <= x1 + 1 and drawn[3] <= y1 + 1, (entry["filename"], shape, drawn)
            painted[y0 - 2:y1 + 2, x0 - 2:x1 + 2] = True
        colours = np.stack([np.abs(pixels - np.array(c)).max(axis=2) < 80 for c in shapes.COLOURS.values()])
        assert colours.any(axis=0)[~painted].sum() == 0  # nothing coloured outside the boxes


def test_attribute_accuracy_of_references_and_of_a_wrong_colour(sample, tmp_path):
    folder, data = sample
    test = [e for e in data["images"] if e["split"] == "test"]
    first = {e["filename"]: e["sentences"][0]["raw"] for e in test}
    scores = shapes.attribute_accuracy(first, folder / "dataset_shapes.json")
    assert scores["images"] == len(test) and scores["pairs"] == 1.0 and scores["held_out"] == 1.0
    swap = {"red": "blue", "blue": "red"}
    recoloured = {name: " ".join(swap.get(w, w) for w in caption.split()) for name, caption in first.items()}
    scores = shapes.attribute_accuracy(recoloured, folder / "dataset_shapes.json")
    unchanged = sum({(swap.get(c, c), k) for c, k in pairs(e)} == pairs(e) for e in test)
    assert unchanged < len(test) and scores["pairs"] == pytest.approx(unchanged / len(test))
    assert shapes.named_pairs("Three small green stars and a red crosses.") == [("green", "star"), ("red", "cross")]
