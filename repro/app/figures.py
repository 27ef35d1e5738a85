"""Figures for the results pages and the ``caption --figure`` command: drawn from run records.

Every figure is saved with a digest of what it draws (``save_figure``), so ``repro table --check`` can
tell a stale figure from a re-rendered one. Figures of licensed media (real datasets' photographs and
videos) go only to ``results/local/``, which git ignores.
"""

from __future__ import annotations

import hashlib
import statistics
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on a machine without a display)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from datamodules.captioning.captions import caption_dataset_spec  # noqa: E402
from datamodules.catalog import resolve_data_dir  # noqa: E402
from repro.app.claims import judge  # noqa: E402
from repro.app.rows import differences_from_preset, rows_of  # noqa: E402
from repro.captioning.image_encoders import encoder_geometry  # noqa: E402
from repro.captioning.images import load_image  # noqa: E402
from repro.captioning.video import FRAME_STEP, decode_frames, is_image_file  # noqa: E402
from repro.errors import UserError  # noqa: E402
from repro.registry import PaperEntry  # noqa: E402
from repro.translation.scoring import bleu_names, bucket_names  # noqa: E402

LOCAL_FIGURES = "local"  # results/local/: figures of licensed media, written for the user, kept out of git


DIGEST_KEY = "repro-figure-digest"


def local_figure_path(results_dir: Path, name: str) -> Path:
    return results_dir / LOCAL_FIGURES / name


def figure_digest(figure) -> str:
    """A digest of what a figure shows: every axes' title, labels, texts, plotted lines and images."""
    digest = hashlib.sha256()
    for axis in figure.get_axes():
        parts = [axis.get_title(), axis.get_title(loc="left"), axis.get_xlabel(), axis.get_ylabel(),
                 [label.get_text() for label in axis.get_xticklabels()],
                 [text.get_text() for text in axis.texts],
                 [(line.get_label(), [[round(float(v), 6) for v in point] for point in line.get_xydata()])
                  for line in axis.get_lines()]]
        digest.update(repr(parts).encode())
        for image in axis.get_images():
            digest.update(image.get_array().tobytes())
    if figure._suptitle is not None:
        digest.update(figure._suptitle.get_text().encode())
    return digest.hexdigest()[:16]


def stored_digest(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            return image.text.get(DIGEST_KEY)
    except (OSError, AttributeError):
        return None


def save_figure(figure, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (a reader never sees half a PNG) and close it; the PNG
    carries the digest of what it plots, so ``repro table --check`` can tell a stale figure."""

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=dpi, metadata={DIGEST_KEY: figure_digest(figure), "Software": "repro"})
    plt.close(figure)
    temporary.replace(path)
    return path


def example_media(record: dict) -> tuple[Path | None, bool]:
    """(the folder an example record's media paths are relative to, whether they are real dataset media)."""

    try:
        spec = caption_dataset_spec(record["dataset"])
        root, _ = resolve_data_dir(None)
        return spec.media_folder(root, record.get("config", {}).get("image_dir", "")), not spec.embedded
    except UserError:
        return None, True


def latest_with_media(records: list[dict]) -> list[tuple[str, dict, Path, bool]]:
    """Per dataset, the latest record (``records`` oldest first) whose examples name their media: (dataset,
    record, the folder the media are relative to, whether they are real dataset media), where the folder
    can be found."""
    latest: dict[str, dict] = {}
    for record in records:
        if record.get("examples") and all("media" in example for example in record["examples"]):
            latest[record["dataset"]] = record
    found = []
    for dataset, record in sorted(latest.items()):
        folder, real = example_media(record)
        if folder is not None:
            found.append((dataset, record, folder, real))
    return found


def example_caption_lines(example: dict) -> list[str]:
    """What a figure prints beside an example: the model's caption, each baseline's, two human ones."""
    lines = [f"model: {example['generated'] or '(empty)'}"]
    lines += [f"{baseline}: {caption}" for baseline, caption in example.get("baselines", {}).items()]
    return lines + [f"human: {reference}" for reference in example["references"][:2]]


def caption_examples_figure(entry: PaperEntry, records: list[dict], results_dir: Path) -> list[tuple[str, Path]]:
    """For ``repro table``: per dataset, the latest run's example test media with its captions.

    Drawn from the run record's ``examples``. Media of the embedded samples (generated by the suite)
    are drawn into ``results/``; real datasets' photographs are licensed for research, not for
    redistribution, so their figures go to ``results/local/`` (ignored by git) on machines that have
    the data, and the committed page shows their captions as text only.
    """

    written = []
    for dataset, record, folder, real in latest_with_media(records):
        examples = [e for e in record["examples"] if e.get("media") and (folder / e["media"]).is_file()]
        name = f"{record['paper']}_{dataset}_examples.png"
        path = local_figure_path(results_dir, name) if real else results_dir / name
        if not examples:
            continue

        columns = 4
        rows = -(-len(examples) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.6 * rows), squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for axis, example in zip(axes.flat, examples):
            axis.imshow(Image.open(folder / example["media"]).convert("RGB"))
            lines = example_caption_lines(example)
            axis.set_title("\n".join(textwrap.fill(line, 46) for line in lines), fontsize=7.5, loc="left")
        figure.suptitle(f"{record['paper']} on {dataset} test media, preset {record['preset']} "
                        f"(record {Path(record['_path']).name})", fontsize=9)
        figure.tight_layout()
        save_figure(figure, path, dpi=100)
        written.append((f"{dataset}: test media and captions", path))
    return written


def caption_examples_text(records: list[dict]) -> str:
    """The latest real-data run's example captions as a Markdown table (text only: no photographs)."""
    latest: dict[str, dict] = {}
    for record in records:
        if record.get("examples") and record.get("data_source") == "real":
            latest[record["dataset"]] = record
    lines = []
    for dataset, record in sorted(latest.items()):
        baselines = sorted({name for e in record["examples"] for name in e.get("baselines", {})})
        header = ["test image", "model", *baselines, "a reference"]
        lines += ["", f"Example captions on {dataset} (record `{Path(record['_path']).name}`; photographs are not "
                      f"redistributed: `repro table` draws them into `results/local/` where the data is present):", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for example in record["examples"]:
            cells = [example["id"], example["generated"] or "(empty)",
                     *[example.get("baselines", {}).get(name, "") for name in baselines], example["references"][0]]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def length_figures(entry: PaperEntry, records: list[dict], results_dir: Path) -> list[tuple[str, Path]]:
    """Fig. 3 of the paper for each dataset: test BLEU by source length, forward against reversed runs.

    One line per (preset, source order) on that dataset: the runs of the newest record's configuration,
    one per seed (the newest of each), their mean with the standard deviation as error bars where there
    are several seeds; the x axis is the length bucket with its number of test sentences.
    """

    written = []
    position = {id(record): index for index, record in enumerate(records)}  # records come oldest first
    by_dataset: dict[str, dict[tuple, object]] = {}
    for row in sorted(rows_of(entry, [r for r in records if any(  # oldest configuration first
            key.startswith(("test/bleu_len_", "test/bleu_lc_len_")) for key in r.get("metrics", {}))]),
            key=lambda row: max(position[id(r)] for r in row.records)):
        order = "reversed" if row.records[-1]["config"].get("reverse_source") else "forward"
        by_dataset.setdefault(row.dataset, {})[(row.preset, order)] = row  # the newest configuration wins
    for dataset, lines in sorted(by_dataset.items()):
        figure, axis = plt.subplots(figsize=(6.5, 4))
        for (preset, order), row in sorted(lines.items()):
            runs = row.records
            metrics = runs[-1]["metrics"]
            # a record written before the _lc names had test/bleu_len_* also for lowercased runs
            bleu = bleu_names(True)[0] if bleu_names(True)[0] in metrics else bleu_names(False)[0]
            case = ", lowercased" if runs[-1]["config"].get("lowercase") else ""
            buckets = [name for _, _, name in bucket_names(tuple(runs[-1]["config"]["length_bucket_edges"]))
                       if all(f"{bleu}_len_{name}" in run["metrics"] for run in runs)]
            labels = [f"{name}\n({int(metrics[f'test/sentences_len_{name}'])})" for name in buckets]
            values = [[run["metrics"][f"{bleu}_len_{name}"] for run in runs] for name in buckets]
            axis.errorbar(labels, [statistics.mean(v) for v in values],
                          yerr=[statistics.stdev(v) for v in values] if row.seeds > 1 else None, marker="o",
                          capsize=3, linestyle="-" if order == "reversed" else "--",
                          label=f"{order} source, preset {preset} (BLEU {row.cell(bleu)}"
                                + (f", {row.seeds} seeds" if row.seeds > 1 else "") + f"{case})")
        axis.set_xlabel("source sentence length in tokens (test sentences)")
        axis.set_ylabel("BLEU (tokenized, multi-bleu; -lc if lowercased)")
        axis.set_title(f"{entry.name} on {dataset}: BLEU by sentence length (paper Fig. 3)", fontsize=10)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        path = results_dir / f"{entry.name}_length_{dataset}.png"
        save_figure(figure, path, dpi=120)
        written.append((f"BLEU by source length on {dataset}" + (", mean ± sd over seeds" if any(
            row.seeds > 1 for row in lines.values()) else ""), path))
    return written


def frame_strip_figure(rows, out: Path, title: str, frames_shown: int = 5) -> Path:
    """One row per clip: up to ``frames_shown`` of its sampled frames, then its captions as text."""

    columns = frames_shown + 1
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.6 * frames_shown + 4.5, 1.8 * len(rows)),
                                squeeze=False, gridspec_kw={"width_ratios": [1] * frames_shown + [3]})
    for axis_row, (frames, name, lines) in zip(axes, rows):
        step = max(1, -(-len(frames) // frames_shown))
        shown = frames[::step][:frames_shown]
        for axis in axis_row:
            axis.axis("off")
        for axis, frame in zip(axis_row, shown):
            axis.imshow(frame)
        axis_row[0].set_title(name, fontsize=7, loc="left")
        axis_row[-1].text(0, 0.5, "\n".join(textwrap.fill(line, 60) for line in lines), fontsize=7.5, va="center")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, out, dpi=100)


def video_examples_figure(entry: PaperEntry, records: list[dict], results_dir: Path) -> list[tuple[str, Path]]:
    """For ``repro table``: per dataset, the latest run's example test clips (sampled frames in time
    order) with the model's, each baseline's and two human captions. Real datasets' clips are YouTube
    users' and go to ``results/local/`` only."""

    written = []
    for dataset, record, folder, real in latest_with_media(records):
        rows = []
        for example in record["examples"]:
            file = folder / example["media"] if example.get("media") else None
            if file is None or not file.is_file():
                continue
            try:
                _, frames = decode_frames(file, record["config"].get("frame_step", FRAME_STEP))
            except UserError:
                continue
            rows.append((frames, example["id"], example_caption_lines(example)))
        if not rows:
            continue
        name = f"{entry.name}_{dataset}_examples.png"
        path = local_figure_path(results_dir, name) if real else results_dir / name
        title = (f"{entry.name} on {dataset} test clips, preset {record['preset']} (record {Path(record['_path']).name}); "
                 f"frames left to right in time")
        written.append((f"{dataset}: test clips and captions", frame_strip_figure(rows, path, title)))
    return written


MAX_WORDS_DRAWN = 12


EXAMPLES_DRAWN = 3


def draw_attention(rows: list[tuple], grid: tuple[int, int], crop: int, resize: int, title: str, path: Path) -> Path:
    """One row per image: the image as the encoder saw it, then one panel per word with alpha_t over it,
    brightest where the model attended (the paper upsamples and smooths the map the same way)."""

    view = T.Compose([T.Resize(resize), T.CenterCrop(crop)])
    columns = 1 + max(min(len(words), MAX_WORDS_DRAWN) for _, words, _ in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 2.1 * len(rows)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for (image, words, maps), row_axes in zip(rows, axes):
        seen = np.asarray(view(image.convert("RGB")))
        row_axes[0].imshow(seen)
        row_axes[0].set_title(textwrap.fill(" ".join(words) or "(empty)", 30), fontsize=7)
        for axis, word, weights in zip(row_axes[1:], words[:MAX_WORDS_DRAWN], maps):
            attention = np.asarray(weights, dtype=float).reshape(grid)
            axis.imshow(seen)
            axis.imshow(attention / max(attention.max(), 1e-8), cmap="Greys_r", alpha=0.6, interpolation="bilinear",
                        extent=(0, crop, crop, 0), vmin=0, vmax=1)
            axis.set_title(word, fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path, dpi=90)


def attention_figure(entry: PaperEntry, records: list[dict], results_dir: Path) -> list[tuple[str, Path]]:
    """For ``repro table``: per dataset and preset, the latest run's attention maps of its first example
    images. Embedded-sample images go into ``results/``; real datasets' photographs (licensed for
    research, not for redistribution) into ``results/local/``, which git ignores."""

    latest: dict[tuple[str, str], dict] = {}
    for record in records:  # oldest first
        if any("attention" in example for example in record.get("examples", [])):
            latest[(record["dataset"], record["preset"])] = record
    written = []
    for (dataset, preset), record in sorted(latest.items()):
        folder, real = example_media(record)
        examples = [e for e in record["examples"] if "attention" in e and folder is not None and e.get("media")
                    and (folder / e["media"]).is_file()][:EXAMPLES_DRAWN]
        if not examples:
            continue
        config = record["config"]
        crop, resize = encoder_geometry(config["encoder"], config.get("image_size", 0))
        rows = [(Image.open(folder / e["media"]), e["attention"]["words"], e["attention"]["maps"]) for e in examples]
        name = f"{entry.name}_{dataset}_{preset}_attention.png"
        path = local_figure_path(results_dir, name) if real else results_dir / name
        title = (f"{entry.name} {config['attention']} attention on {dataset} test images, preset {preset} "
                 f"(record {Path(record['_path']).name})")
        draw_attention(rows, tuple(examples[0]["attention"]["grid"]), crop, resize, title, path)
        written.append((f"{dataset}: where each word looked, {config['attention']} attention (preset {preset})", path))
    return written



def history_figure(entry: PaperEntry, records: list[dict], path: Path) -> Path | None:
    """The monitored validation metric per epoch, one line per recorded run; beside it, where the runs
    recorded them, training and validation perplexity per epoch (how far training fits the data)."""
    metric = entry.monitor[0]
    runs = [r for r in records if r.get("history") and any(metric in h for h in r["history"])]
    if not runs:
        return None
    with_training = [r for r in runs if any("train/ppl_epoch" in h and "val/ppl" in h for h in r["history"])]
    panels = 2 if with_training and metric != "val/ppl" else 1
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    axis = axes[0][0]
    for record in runs:
        points = [(h["epoch"] + 1, h[metric]) for h in record["history"] if metric in h]
        overrides = differences_from_preset(entry, record)
        label = f"{record['preset']} {overrides} on {record['dataset']}".replace("  ", " ")
        line, = axis.plot(*zip(*points), marker="o", label=label)
        if metric == "val/ppl" and record in with_training:
            training = [(h["epoch"] + 1, h["train/ppl_epoch"]) for h in record["history"] if "train/ppl_epoch" in h]
            axis.plot(*zip(*training), linestyle=":", color=line.get_color(), label=f"{label} (training)")
    datasets = {record["dataset"] for record in runs}
    for result in entry.published:  # a published number only beside runs on the same dataset
        if result.dataset in datasets and f"{result.split}/{result.metric}" == metric.replace("val/", "test/"):
            axis.axhline(result.value, linestyle="--", color="gray", label=f"published {result.system} (test)")
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(f"{entry.name}: {metric} per epoch" + (" (dotted: training)" if metric == "val/ppl" and with_training else ""))
    axis.legend(fontsize=7)
    if panels == 2:
        axis = axes[0][1]
        for record in with_training:
            label = f"{record['preset']} on {record['dataset']}"
            validation = [(h["epoch"] + 1, h["val/ppl"]) for h in record["history"] if "val/ppl" in h]
            training = [(h["epoch"] + 1, h["train/ppl_epoch"]) for h in record["history"] if "train/ppl_epoch" in h]
            line, = axis.plot(*zip(*validation), marker="o", label=f"{label}: validation")
            axis.plot(*zip(*training), linestyle=":", color=line.get_color(), label=f"{label}: training")
        axis.set_xlabel("epoch")
        axis.set_ylabel("perplexity")
        axis.set_yscale("log")
        axis.set_title(f"{entry.name}: training and validation perplexity")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)


def claims_figure(entry: PaperEntry, by_paper: dict[str, list[dict]], path: Path) -> Path | None:
    """Each judged comparison of the paper's claims (``repro.app.claims``) with at least 2 runs a side, run by
    run: one dot per run on each side (a grey line joins a run's two values where both sides come from the
    same runs), each side's mean as a bar, and the verdict with the difference and its standard error, so
    the spread a verdict rests on is seen, not only read."""
    judgements = [j for claim in entry.claims for j in judge(claim, entry, by_paper)
                  if min(len(j.better), len(j.worse)) >= 2]
    if not judgements:
        return None
    columns = min(3, len(judgements))
    rows = -(-len(judgements) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 4.4 * rows), squeeze=False)
    for axis in axes.flat[len(judgements):]:
        axis.axis("off")
    for axis, judgement in zip(axes.flat, judgements):
        sides = (judgement.better, judgement.worse)
        # runs spread across each side's slot in a fixed order, so the figure is the same on every redraw
        xs = [[side + 0.24 * (k / max(len(values) - 1, 1) - 0.5) for k in range(len(values))]
              for side, values in enumerate(sides)]
        if judgement.paired:
            for k in range(len(judgement.better)):
                axis.plot([xs[0][k], xs[1][k]], [judgement.better[k], judgement.worse[k]], color="0.8", zorder=1,
                          label="_same run")
        for side, (values, colour) in enumerate(zip(sides, ("tab:blue", "tab:orange"))):
            axis.plot(xs[side], values, "o", color=colour, zorder=2, label=f"_runs {side}")
            mean = statistics.mean(values)
            axis.plot([side - 0.2, side + 0.2], [mean, mean], color="black", linewidth=2, label=f"_mean {side}")
        same_row = judgement.paired or judgement.presets[0] == judgement.presets[1]
        axis.set_xticks([0, 1])
        axis.set_xticklabels([textwrap.fill(name if same_row else f"{name} (preset {preset})", 28)
                              for name, preset in zip(judgement.labels, judgement.presets)], fontsize=7)
        axis.set_xlim(-0.6, 1.6)
        metrics = {judgement.claim.better.metric, judgement.claim.worse.metric}
        axis.set_ylabel(" / ".join(sorted(metrics)), fontsize=8)
        # the rows compared: one preset, or each side's; and how both depart from their presets (alike, unless
        # no pair of rows matched: then each side's)
        which = f"preset {judgement.presets[0]}" if same_row else ""
        departures = set(judgement.departures) - {""}
        which += (", " if which and departures else "") + " / ".join(sorted(departures))
        error = "" if np.isinf(judgement.error) else f" ± {judgement.error:.1f}"
        runs = min(len(judgement.better), len(judgement.worse))
        where = judgement.dataset + (f": {textwrap.fill(which, 60)}" if which else "")
        verdict = f"{judgement.verdict}: {judgement.difference:+.1f}{error} in its favour ({runs} runs a side)"
        axis.set_title(f"{textwrap.fill(judgement.claim.statement, 50)}\n{where}\n{verdict}", fontsize=8)
    figure.suptitle(f"{entry.name}: the claims' comparisons, one dot per run, bars at the means", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def caption_files_figure(module, paths: list[Path], captions: list[str], out: Path) -> Path:
    """``repro caption --figure``: the files with their captions, drawn by what the captioner takes: a
    video captioner's sampled frames in a row per file; an attention captioner's map for each word
    (like Xu et al.'s Figs. 2-3); otherwise the images with their captions."""
    name = module.hparams.get("paper")
    config = module.config
    if module.config_class.visual_features == "frames":
        rows = []
        for path in paths:
            frames = [load_image(Path(path))] if is_image_file(Path(path)) else \
                decode_frames(Path(path), config.frame_step, config.max_frames)[1]
            rows.append((frames, Path(path).name, [f"model: {captions[len(rows)] or '(empty)'}"]))
        return frame_strip_figure(rows, out, f"{name}: captions of {len(paths)} file(s)")
    visual = module.visual_for_files(paths)
    maps = module.attention_of(module.visual_context(visual), captions)
    if maps is not None:
        crop, resize = encoder_geometry(config.encoder, config.image_size)
        rows = [(load_image(Path(p)), m["words"], m["alpha"].tolist()) for p, m in zip(paths, maps)]
        title = f"{name} ({config.attention} attention): where each word looked"
        return draw_attention(rows, tuple(visual.grid), crop, resize, title, out)
    figure, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 4.4), squeeze=False)
    for axis, path, caption in zip(axes[0], paths, captions):
        axis.imshow(Image.open(path).convert("RGB"))
        axis.set_title(textwrap.fill(caption or "(empty)", 40), fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    return save_figure(figure, out)

# The figures a paper's entry names (``PaperEntry.figures``), drawn by ``repro table`` beside the
# validation curves every paper gets: (entry, its records oldest first, results folder) -> [(caption, PNG)]
FIGURES = {
    "caption_examples": caption_examples_figure,
    "attention_maps": attention_figure,
    "bleu_by_length": length_figures,
    "video_examples": video_examples_figure,
}
