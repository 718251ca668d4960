"""Helpers shared by the tests: JSON / JSON-lines fixtures written as the converters write them (UTF-8,
ensure_ascii=False, one record a line, each line ending in a newline), plain fixture images, and the runs
of trained label positions of a rendered sample, a free TCP port for multi-process launches, and for the packing
and Flamingo tests: each sample's logits cut out of packed rows, a tiny Flamingo with its gates opened, and a
list of canonical items as a raw dataset."""
import json
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from mllm.dataset.root import IGNORE_INDEX

Colour = tuple[int, ...]  # RGB, or RGBA with mode='RGBA'


def write_jsonl(path, records: Iterable) -> str:
    """`records` as JSON lines at `path` (parent folders created); returns the path as a string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records), encoding='utf-8')
    return str(path)


def write_json(path, obj, indent: int | None = None) -> str:
    """`obj` as one JSON document at `path` (parent folders created; no trailing newline); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent), encoding='utf-8')
    return str(path)


def read_jsonl(path) -> list[dict]:
    """Every line of a JSON-lines file, parsed."""
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def write_images(folder, sizes: dict[str, tuple[int, int]], color: Colour | Callable[[int], Colour] = (120, 30, 200),
                 mode: str = 'RGB', **save_kwargs) -> Path:
    """One plain image per `name: (width, height)` under `folder` (names may hold sub-folders; the format
    follows the extension). `color` is one colour or a function of the image's position in `sizes`;
    `save_kwargs` go to `Image.save` (e.g. quality=95). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, size) in enumerate(sizes.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color(k) if callable(color) else color).save(path, **save_kwargs)
    return folder


def save_png(path, size: tuple[int, int], colour: Colour = (30, 140, 220)) -> None:
    """A lossless image of `size` with a red top-left pixel, saved as PNG under any name (a release's own
    `.jpg` file name is kept; PIL reads an image by its content)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new('RGB', size, colour)
    image.putpixel((0, 0), (255, 0, 0))
    image.save(path, format='PNG')


def label_runs(labels) -> list[list[int]]:
    """Lists of consecutive positions whose label is not IGNORE_INDEX (one per trained answer span)."""
    runs, current = [], []
    for t, v in enumerate(labels.tolist()):
        if v != IGNORE_INDEX:
            current.append(t)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (torchrun's --master_port 0 hangs with torch 2.13: the workers never meet)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def packed_sample_logits(logits, rows: list[list[int]], lengths: list[int]) -> dict:
    """{sample: its logits} cut out of (rows, width, vocab) `logits` whose row r holds the samples rows[r] back to
    back (one sample a row when unpacked)."""
    out = {}
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            out[i] = logits[r, at:at + lengths[i]]
            at += lengths[i]
    return out


def open_flamingo_gates(model, seed: int = 0, std: float = 0.3):
    """Open a Flamingo model's gates and draw larger cross-attention and perceiver weights, so that images visibly
    change its predictions (at init the gates are 0 and the perceiver's output is mostly its latents)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, block in model.gated_cross_attn_blocks():
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(0.5)
            for lin in (block.attn.to_q, block.attn.to_kv, block.attn.to_out):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * std)
        for attn, _ in model.perceiver.layers:
            for lin in (attn.to_q, attn.to_kv, attn.to_out):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * std)
    return model


class ItemList:
    """A minimal raw dataset: canonical items held in a list, returned by index."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]
