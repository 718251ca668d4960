"""Synthetic "shapes" referring-expression (REC) data for the embedded demo.

Each image is a non-square canvas (landscape or portrait) cut into square
cells; a few coloured shapes (circle / square / triangle) sit in distinct
cells (by default centred at a fixed size, so box values come from a small
set; ``size_min``/``size_max``/``jitter`` add variation). Every
record names one target with an expression that only the image can resolve
("the red shape", "the triangle", "the blue circle", "the leftmost shape",
"the top circle", ...) and is written in the Shikra REC JSONL layout::

    {"img_path": "train/000123.png", "expression": "the red circle",
     "bbox": [x0, y0, x1, y1], ...}

with the box in pixels of the original image (xyxy). Images go to
``root/images/<split>/``, the records to ``root/train.jsonl`` and
``root/test.jsonl``; ``root/meta.json`` remembers the parameters so a second
call with the same arguments does no work.

The canvas is ``cols x rows`` cells with ``cols - rows`` even, so that after
padding to a square (centred, as LLaVA's expand2square does) the cells still
fall on a regular ``cols x cols`` grid: with ``image_size = cols * patch``
every cell is exactly one vision patch.

Run ``python -m mllm.demo.shapes --root DIR --num-train N --num-test M``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence

# The demo's question phrasings live in mllm/dataset/templates/REC_shapes.json (read by RECDataset);
# every word there and in the expressions below is a single token of mllm.demo.tiny_tokenizer.
COLORS: dict[str, tuple] = {
    "red": (220, 30, 30),
    "green": (20, 160, 40),
    "blue": (30, 70, 225),
    "yellow": (235, 205, 0),
    "purple": (150, 40, 190),
}
SHAPE_TYPES = ["circle", "square", "triangle"]

DEFAULTS = dict(
    cell=32,  # cell side in pixels
    cols=5,  # long side of the canvas, in cells
    rows=3,  # short side, in cells; cols - rows must be even
    min_shapes=2,  # test images: 2..max_shapes shapes
    max_shapes=4,
    train_min_shapes=1,  # train images may hold a single shape (curriculum)
    train_max_shapes=4,
    size_min=0.75,  # shape side as a fraction of the cell (equal min/max: box values
    size_max=0.75,  # come from a small fixed set, which is easier to learn)
    jitter=0.0,  # fraction of the free space a shape may drift off the cell centre
    unique_colors=True,  # one colour per shape within an image
    background=(236, 236, 236),
)

_KIND_ORDER = ["color", "type", "color_type", "extreme", "relative"]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _draw_shape(draw, kind: str, box: list[int], color: tuple) -> None:
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=color)
    elif kind == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=color)
    elif kind == "triangle":
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2.0, y0)], fill=color)
    else:
        raise ValueError(kind)


def _expressions(rng: random.Random, shapes: list[dict], t: int) -> list[tuple]:
    """All (kind, text) expressions that single out shape ``t``."""
    me = shapes[t]
    others = [s for i, s in enumerate(shapes) if i != t]
    out = []
    if all(s["color"] != me["color"] for s in others):
        out.append(("color", f"the {me['color']} {rng.choice(['shape', 'one', 'object'])}"))
    if all(s["type"] != me["type"] for s in others):
        out.append(("type", f"the {me['type']}"))
    if all((s["color"], s["type"]) != (me["color"], me["type"]) for s in others):
        out.append(("color_type", f"the {me['color']} {me['type']}"))
    # extremes over the whole image, strict in the cell grid
    axes = {"leftmost": ("col", -1), "rightmost": ("col", 1), "topmost": ("row", -1), "bottommost": ("row", 1)}
    for word, (key, sign) in axes.items():
        if others and all(sign * me[key] > sign * s[key] for s in others):
            out.append(("extreme", f"the {word} shape"))
    # relative position among shapes of the same type / colour
    rel = {"left": ("col", -1), "right": ("col", 1), "top": ("row", -1), "bottom": ("row", 1)}
    for attr in ("type", "color"):
        group = [s for s in others if s[attr] == me[attr]]
        if not group:
            continue
        for word, (key, sign) in rel.items():
            if all(sign * me[key] > sign * s[key] for s in group):
                noun = me["type"] if attr == "type" else f"{me['color']} one"
                out.append(("relative", f"the {word} {noun}"))
    return out


def _make_image(rng: random.Random, n_shapes: int, opt: dict):
    from PIL import Image, ImageDraw

    cell, cols, rows = opt["cell"], opt["cols"], opt["rows"]
    portrait = rng.random() < 0.5
    gw, gh = (rows, cols) if portrait else (cols, rows)
    w, h = gw * cell, gh * cell
    bg = tuple(int(c) + rng.randint(-6, 6) for c in opt["background"])
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    cells = rng.sample(range(gw * gh), n_shapes)
    palette = list(COLORS)
    colors = rng.sample(palette, n_shapes) if opt["unique_colors"] else [rng.choice(palette) for _ in cells]
    shapes = []
    for ci, color in zip(cells, colors, strict=True):
        col, row = ci % gw, ci // gw
        side = round(cell * rng.uniform(opt["size_min"], opt["size_max"]))
        free = cell - side
        dx = round((free / 2.0) * opt["jitter"] * rng.uniform(-1, 1))
        dy = round((free / 2.0) * opt["jitter"] * rng.uniform(-1, 1))
        x0 = col * cell + free // 2 + dx
        y0 = row * cell + free // 2 + dy
        kind = rng.choice(SHAPE_TYPES)
        box = [x0, y0, x0 + side, y0 + side]
        _draw_shape(draw, kind, box, COLORS[color])
        shapes.append({"type": kind, "color": color, "col": col, "row": row, "box": box})
    return img, shapes


def _make_record(rng: random.Random, idx: int, split: str, opt: dict, lo: int, hi: int, folder: str):
    n = rng.randint(lo, hi)
    while True:
        img, shapes = _make_image(rng, n, opt)
        t = rng.randrange(n)
        exprs = _expressions(rng, shapes, t)
        if exprs:
            break
    kinds = sorted({k for k, _ in exprs}, key=_KIND_ORDER.index)
    kind = rng.choice(kinds)
    expr = rng.choice([e for k, e in exprs if k == kind])
    rel = f"{split}/{idx:06d}.png"
    img.save(os.path.join(folder, rel))
    me = shapes[t]
    return {
        "img_path": rel,
        "expression": expr,
        "bbox": [float(v) for v in me["box"]],
        "width": img.width,
        "height": img.height,
        "num_shapes": n,
        "expr_type": kind,
        "target_index": t,
        "all_boxes": [[float(v) for v in s["box"]] for s in shapes],
        "shapes": [{"type": s["type"], "color": s["color"]} for s in shapes],
    }


def generate_shapes_dataset(root: str, num_train: int, num_test: int, seed: int = 0, **layout) -> dict:
    """Write the shapes REC dataset under ``root`` (skipped if already there).

    Returns a dict with the paths (``train_jsonl``, ``test_jsonl``,
    ``image_folder``) and the parameters used. ``layout`` overrides entries of
    ``DEFAULTS`` (cell, cols, rows, min_shapes, max_shapes, train_min_shapes,
    train_max_shapes, size_min, size_max, jitter, unique_colors, background).
    """
    unknown = set(layout) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown layout options: {sorted(unknown)}")
    opt = dict(DEFAULTS, **layout)
    opt["background"] = list(opt["background"])
    if (opt["cols"] - opt["rows"]) % 2:
        raise ValueError("cols - rows must be even so the padded square stays cell-aligned")
    if opt["min_shapes"] < 2:
        raise ValueError("test images must hold at least 2 shapes")
    if opt["max_shapes"] > min(len(COLORS) if opt["unique_colors"] else 99, opt["cols"] * opt["rows"]):
        raise ValueError("max_shapes too large for the palette / grid")
    params = dict(opt, num_train=num_train, num_test=num_test, seed=seed, version=1)
    folder = os.path.join(root, "images")
    info = {
        "root": root,
        "image_folder": folder,
        "train_jsonl": os.path.join(root, "train.jsonl"),
        "test_jsonl": os.path.join(root, "test.jsonl"),
        "params": params,
    }
    meta_path = os.path.join(root, "meta.json")
    if os.path.isfile(meta_path) and os.path.isfile(info["train_jsonl"]) and os.path.isfile(info["test_jsonl"]):
        with open(meta_path) as f:
            if json.load(f) == params:
                info["skipped"] = True
                return info
    for split in ("train", "test"):
        os.makedirs(os.path.join(folder, split), exist_ok=True)
    plan = [
        ("train", num_train, opt["train_min_shapes"], opt["train_max_shapes"], 1),
        ("test", num_test, opt["min_shapes"], opt["max_shapes"], 2),
    ]
    for split, count, lo, hi, salt in plan:
        rows = []
        for i in range(count):
            rng = random.Random(seed * 1_000_003 + salt * 10_000_019 + i)
            rows.append(_make_record(rng, i, split, opt, lo, hi, folder))
        with open(info[f"{split}_jsonl"] + ".tmp", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        os.replace(info[f"{split}_jsonl"] + ".tmp", info[f"{split}_jsonl"])
    with open(meta_path, "w") as f:
        json.dump(params, f, indent=1)
    info["skipped"] = False
    return info


def chance_accuracy(test_jsonl: str, iou_threshold: float = 0.5) -> float:
    """Exact expected Acc@IoU of answering with a uniformly random shape's box."""
    total, n = 0.0, 0
    with open(test_jsonl) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            boxes = r["all_boxes"]
            total += sum(_iou(b, r["bbox"]) > iou_threshold for b in boxes) / len(boxes)
            n += 1
    return total / max(n, 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate the synthetic shapes REC dataset.")
    p.add_argument("--root", required=True)
    p.add_argument("--num-train", type=int, required=True)
    p.add_argument("--num-test", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    for k, v in DEFAULTS.items():
        if isinstance(v, bool):
            p.add_argument(f"--{k.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"), default=v)
        elif isinstance(v, (int, float)):
            p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    a = vars(p.parse_args(argv))
    root, ntr, nte, seed = a.pop("root"), a.pop("num_train"), a.pop("num_test"), a.pop("seed")
    info = generate_shapes_dataset(root, ntr, nte, seed=seed, **a)
    print(json.dumps({k: v for k, v in info.items() if k != "params"}, indent=1))
    print(f"chance Acc@0.5 on test: {chance_accuracy(info['test_jsonl']):.4f}")


if __name__ == "__main__":
    main()
