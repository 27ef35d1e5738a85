"""The caption datamodule: each on-disk format, partial image sets, preprocessing, sharding, bad input."""

import json
from pathlib import Path

import pytest
import torch
from conftest import shared_data

from datamodules.captioning.captions import (
    CaptionDataModule,
    ShardSampler,
    collate,
    image_files,
    read_dataset,
    read_karpathy_json,
    tokenize_caption,
)
from repro.errors import UserError

COLOURS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}


def write_image(path: Path, colour=(200, 30, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), colour).save(path, quality=90)


def write_flickr8k(root: Path, per_split=(6, 2, 2), images=True) -> Path:
    """A Flickr8k text bundle and images folder in the official formats: image i is one colour,
    its five captions name it (plus a rare word that the count threshold turns into <unk>)."""
    text = root / "flickr8k_text"
    text.mkdir(parents=True)
    lines, splits = [], {}
    number = 0
    for split, count in zip(("train", "dev", "test"), per_split):
        splits[split] = []
        for _ in range(count):
            colour = list(COLOURS)[number % 3]
            name = f"{1000 + number}_img.jpg"
            splits[split].append(name)
            lines += [f"{name}#{k}\tA {colour} square, on a plain background{'!' if k else '.'}" for k in range(4)]
            lines.append(f"{name}#4\tA {colour} thing number{number}")
            if images:
                write_image(root / "flickr8k_images" / name, COLOURS[colour])
            number += 1
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, names in splits.items():
        (text / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    return root


def datamodule(root: Path, dataset="flickr8k", **options) -> CaptionDataModule:
    options = {"encoder": "efficientnet-lite0", "encoder_weights": "random", "image_size": 32, "batch_size": 4,
               "min_word_count": 2, **options}
    return CaptionDataModule(dataset, root, **options)


def test_tokenize_like_neuraltalk2():
    assert tokenize_caption("A dog's ball, on the GRASS.") == ["a", "dogs", "ball", "on", "the", "grass"]


def test_flickr8k_bundle_vocabulary_threshold_and_encoding(tmp_path):
    module = datamodule(write_flickr8k(tmp_path))
    assert [len(module.images[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    words = module.vocabulary.words
    assert words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert "square" in words and "number0" not in words  # seen once: below min_word_count=2
    encoded = module.encode(["a", "red", "number0"], truncate=True)
    assert module.vocabulary.decode(encoded.tolist()) == ["<start>", "a", "red", "<unk>", "<end>"]
    module.max_caption_length = 2
    assert len(module.encode(["a", "red", "square"], truncate=True)) == 4  # cut to 2 words + <start>/<end>
    # references stay raw: coco-caption tokenizes them itself
    assert module.images["test"][0].captions[0].endswith("background.")


def test_missing_images_are_counted_and_skipped(tmp_path, capsys):
    root = write_flickr8k(tmp_path)
    (root / "flickr8k_images" / "1001_img.jpg").unlink()
    module = datamodule(root)
    assert len(module.images["train"]) == 5
    assert "9 of 10 images found" in capsys.readouterr().out
    assert "1001_img.jpg" not in image_files("flickr8k", root)


def test_no_images_at_all_is_an_error_naming_the_folders(tmp_path):
    root = write_flickr8k(tmp_path, images=False)
    with pytest.raises(UserError, match="no images folder under .*looked for .*flickr8k_images"):
        datamodule(root).images


def test_malformed_caption_line_names_file_and_line(tmp_path):
    root = write_flickr8k(tmp_path)
    path = root / "flickr8k_text" / "Flickr8k.token.txt"
    lines = path.read_text().splitlines()
    lines[6] = "1001_img.jpg a caption without the tab"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:7: expected"):
        datamodule(root).images


def test_split_file_naming_unknown_images(tmp_path):
    root = write_flickr8k(tmp_path)
    with open(root / "flickr8k_text" / "Flickr_8k.testImages.txt", "a") as handle:
        handle.write("999_not_captioned.jpg\n")
    with pytest.raises(UserError, match=r"Flickr_8k.testImages.txt: 1 image\(s\) have no captions.*999_not_captioned"):
        datamodule(root).images


def test_empty_vocabulary_after_thresholding(tmp_path):
    with pytest.raises(UserError, match=r"min_word_count=1000\): the vocabulary is empty .* at least 1000 times"):
        datamodule(write_flickr8k(tmp_path), min_word_count=1000).vocabulary


def test_karpathy_json_and_its_errors(tmp_path):
    write_image(tmp_path / "imgs" / "x.jpg")
    entry = {"filename": "x.jpg", "split": "restval", "sentences": [{"tokens": ["a", "cat"], "raw": "A cat."}]}
    (tmp_path / "d.json").write_text(json.dumps({"images": [entry]}))
    [image] = read_karpathy_json(tmp_path / "d.json", tmp_path / "imgs")
    assert image.split == "train" and image.tokens == [["a", "cat"]] and image.captions == ["A cat."]
    (tmp_path / "d.json").write_text(json.dumps({"images": [{"filename": "x.jpg", "sentences": []}]}))
    with pytest.raises(UserError, match=r"d.json: images\[0\] lacks 'split'"):
        read_karpathy_json(tmp_path / "d.json", tmp_path)
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(UserError, match="d.json: not a JSON file"):
        read_karpathy_json(tmp_path / "d.json", tmp_path)


def test_coco_official_annotations_through_pycocotools(tmp_path):
    folder = tmp_path / "coco"
    for part, ids in (("train2014", [1, 2]), ("val2014", [3])):
        images = [{"id": i, "file_name": f"COCO_{part}_{i:012d}.jpg", "width": 40, "height": 32} for i in ids]
        annotations = [{"id": 10 * i + k, "image_id": i, "caption": f"A photo number {k}."} for i in ids for k in range(5)]
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        (folder / "annotations" / f"captions_{part}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "info": {}, "licenses": []}))
        for image in images:
            write_image(folder / part / image["file_name"])
    images = read_dataset("coco", tmp_path)
    assert sorted((i.image_id, i.split) for i in images) == [("1", "train"), ("2", "train"), ("3", "val")]
    assert all(i.path.is_file() and len(i.captions) == 5 for i in images)


def test_features_batches_and_corrupt_image(tmp_path, capsys):
    root = write_flickr8k(tmp_path)
    (root / "flickr8k_images" / "1002_img.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    module = datamodule(root)
    module.prepare_data()
    module.setup("fit")
    assert len(module.images["train"]) == 5  # the corrupt one is dropped, counted
    batch = next(iter(module.train_dataloader()))
    assert batch.visual.kind == "pooled" and batch.visual.features.shape == (4, module.encoder.feature_dim)
    assert batch.captions[:, 0].eq(module.vocabulary.index("<start>")).all()
    assert batch.references is None  # training batches carry no references
    evaluation = next(iter(module.val_dataloader()))
    assert evaluation.captions.shape[0] == 5 * len(evaluation.visual)  # all captions of each image
    assert evaluation.caption_owner.tolist() == [0] * 5 + [1] * 5
    # what evaluation needs arrives in the batch: ids, raw references, media relative to the images folder
    assert evaluation.ids == ["1006_img.jpg", "1007_img.jpg"] and evaluation.positions.tolist() == [0, 1]
    assert evaluation.references[0][0].endswith("background.") and evaluation.media == evaluation.ids


def test_spatial_features_reach_the_batches_and_the_evaluation_set(tmp_path):
    module = datamodule(write_flickr8k(tmp_path), visual_features="spatial", image_size=64)
    module.prepare_data()
    module.setup("fit")
    h, w = module.encoder.spatial_grid
    batch = next(iter(module.train_dataloader()))
    assert batch.visual.kind == "spatial" and batch.visual.grid == (h, w)
    assert batch.visual.features.shape == (4, h * w, module.encoder.spatial_dim)
    assert batch.visual.features.dtype == torch.float32 and module.visual_dim == module.encoder.spatial_dim
    test = module.evaluation_set("test")
    assert test.ids == ["1008_img.jpg", "1009_img.jpg"] and len(test.references[1]) == 5
    assert test.pooled.shape == (2, module.encoder.feature_dim)  # retrieval uses pooled vectors whatever the model takes
    assert test.visual([1]).features.shape == (1, h * w, module.encoder.spatial_dim)
    assert (test.media_root / test.media[0]).is_file()


def test_evaluation_shards_cover_every_image_once():
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(7))


def test_collate_pads_and_maps_captions_to_images():
    items = [{"position": 0, "id": "a", "visual": torch.zeros(3), "captions": [torch.tensor([1, 5, 2])]},
             {"position": 4, "id": "b", "visual": torch.ones(3),
              "captions": [torch.tensor([1, 2]), torch.tensor([1, 6, 7, 2])]}]
    batch = collate(items, "pooled")
    assert batch.captions.tolist() == [[1, 5, 2, 0], [1, 2, 0, 0], [1, 6, 7, 2]]
    assert batch.caption_owner.tolist() == [0, 1, 1] and batch.positions.tolist() == [0, 4]
    assert batch.ids == ["a", "b"] and batch.visual.features.shape == (2, 3)


def test_shapes_sample_is_deterministic_and_in_karpathy_format(tmp_path):
    from datamodules.captioning.shapes_sample import generate

    first = generate(tmp_path / "a")
    second = generate(tmp_path / "b")
    assert (first / "dataset_shapes.json").read_text() == (second / "dataset_shapes.json").read_text()
    images = read_karpathy_json(first / "dataset_shapes.json", first)
    assert {i.split for i in images} == {"train", "val", "test"} and all(len(i.captions) == 5 for i in images)
    assert all(i.path.is_file() for i in images[:10])


def test_real_flickr8k_subset_is_found_and_counted(capsys):
    root = shared_data("flickr8k_text").parent
    shared_data("flickr8k_images_subset")
    module = CaptionDataModule("flickr8k", root, "efficientnet-lite0", image_dir="flickr8k_images_subset/images")
    assert [len(module.images[s]) for s in ("train", "val", "test")] == [753, 113, 125]
    assert "991 of 8000 images found" in capsys.readouterr().out


def test_flat_caption_ids_give_the_items_and_batches_a_tensor_per_caption_gave(tmp_path):
    """Captions are held as one flat id tensor (COCO size); every item, hence every batch for a seed, is
    what the earlier tensor-per-caption items were, so existing run records stay valid."""
    module = datamodule(write_flickr8k(tmp_path), max_caption_length=4)
    module.prepare_data()
    module.setup("fit")
    for split, per_caption in (("train", True), ("val", False)):
        images = module.images[split]
        encoded = [[module.encode(words, truncate=per_caption) for words in image.tokens] for image in images]
        pairs = ([(i, k) for i, captions in enumerate(encoded) for k in range(len(captions))] if per_caption
                 else [(i, None) for i in range(len(images))])
        items = module.split_items(split, per_caption)
        assert len(items) == len(pairs)
        for index, (position, caption) in enumerate(pairs):
            item = items[index]
            expected = encoded[position] if caption is None else [encoded[position][caption]]
            assert item["position"] == position and item["id"] == images[position].image_id
            assert len(item["captions"]) == len(expected)
            assert all(torch.equal(got, want) and got.dtype == want.dtype for got, want in zip(item["captions"], expected))
