"""Where an attention captioner looks: the share of its attention inside the box of the object a word names.

Xu et al. 2015 show (Figs. 2-5) that the model attends to the object it is naming; on data whose images
carry object boxes (the embedded shapes sample; COCO's instances) this measures it: for each caption
word that names an annotated object by colour or kind, the attention mass alpha_t inside that object's
box, beside the box's share of the grid (what a uniform map would put there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_cell_fractions(boxes: list[list[float]], image_size: tuple[int, int], grid: tuple[int, int], crop: int,
                       resize: int) -> torch.Tensor:
    """[h, w]: the share of each cell of the annotation grid that lies inside any of ``boxes``.

    Boxes are [x0, y0, x1, y1] in pixels of the original image (width, height = ``image_size``). The
    encoder resizes the shorter side to ``resize`` and cuts the centre ``crop`` x ``crop`` square, and
    cell (i, j) of an h x w map is taken to see the (crop / h) x (crop / w) patch at row i, column j
    of that square (its receptive field is wider; its centre is there). A pixel of the square is in a
    box if its centre, mapped back to the original image, is.
    """
    width, height = image_size
    scale = resize / min(width, height)
    offset_x, offset_y = (width * scale - crop) / 2, (height * scale - crop) / 2
    centres = torch.arange(crop, dtype=torch.float64) + 0.5
    x, y = (centres + offset_x) / scale, (centres + offset_y) / scale  # crop pixel -> original coordinates
    inside = torch.zeros(crop, crop, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        inside |= ((y >= y0) & (y <= y1)).unsqueeze(1) & ((x >= x0) & (x <= x1)).unsqueeze(0)
    return F.adaptive_avg_pool2d(inside.double()[None, None], grid)[0, 0]


def named_objects(word: str, objects: list[dict]) -> list[dict]:
    """The objects a caption word names by colour or kind ("red", "circle"/"circles")."""
    return [o for o in objects if word in (o.get("colour"), o.get("kind"), f"{o.get('kind')}s")]


def annotation_image_size(annotation: dict) -> tuple[int, int]:
    """(width, height) of an annotated image, as its annotation gives it (``width`` and ``height``, or
    ``image_size``, one number for a square image)."""
    if "width" in annotation and "height" in annotation:
        return int(annotation["width"]), int(annotation["height"])
    size = annotation["image_size"]
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def attention_in_boxes(words: list[str], alpha: torch.Tensor, annotation: dict, grid: tuple[int, int], crop: int,
                       resize: int) -> list[tuple[float, float]]:
    """For each word that names an annotated object: (attention mass inside its box, the box's share of
    the grid, i.e. what a uniform map would put there). ``alpha`` [len(words), L]."""
    objects = [o for o in annotation.get("objects") or [] if "box" in o]
    shares = []
    for word, weights in zip(words, alpha):
        named = named_objects(word, objects)
        if not named:
            continue
        fractions = box_cell_fractions([o["box"] for o in named], annotation_image_size(annotation), grid, crop, resize)
        shares.append((float((weights.double().view(grid) * fractions).sum()), float(fractions.mean())))
    return shares
