"""Convert the official Visual7W pointing release to JSONL for `V7WPointingDataset` (point-v7w).

Official files read (http://web.stanford.edu/~yukez/visual7w/; yukezhu/visual7w-toolkit's
datasets/visual7w-pointing/download_dataset.sh fetches the same archive):

    dataset_v7w_pointing.json   from dataset_v7w_pointing.zip
                                (http://ai.stanford.edu/~yukez/papers/resources/dataset_v7w_pointing.zip):
        {"images": [{"image_id": 2, "filename": "v7w_2.jpg", "split": "val",
                     "qa_pairs": [{"qa_id": 8, "image_id": 2, "question": "Which ...?", "type": "which",
                                   "answer": 1001, "multiple_choices": [1002, 1003, 1004]}]}],
         "boxes": [{"box_id": 1001, "x": 3, "y": 2, "width": 6, "height": 6, "name": "toilet"}, ...]}
    images                      visual7w_images.zip (http://vision.stanford.edu/yukezhu/visual7w_images.zip)
                                -> images/v7w_<image_id>.jpg (the {v7w} root)

`answer` and `multiple_choices` are box ids into the top-level `boxes` list. A release whose boxes sit in
a separate JSON (a list of box objects, or an object with a "boxes" list) is read with --boxes.

Command:

    python tools/prepare_data/visual7w.py --pointing /data/v7w/dataset_v7w_pointing.json \
        --image-folder /data/v7w/images --out-dir /data/annotations

writes v7w_pointing_train.jsonl, v7w_pointing_val.jsonl, v7w_pointing_test.jsonl, one record per QA pair:

    {"img_path": "v7w_2.jpg", "image_id": 2, "qa_id": 8, "question": "Which ...?",
     "candidates": [[x0, y0, x1, y1], x4], "candidate_ids": [1003, 1001, 1004, 1002],
     "candidate_names": [...], "answer_index": 1, "width": 500, "height": 375}

Conventions (decided here):
- Boxes are [x, y, x + width, y + height] in pixels. The release has boxes starting at -1 and boxes
  past the image edge: coordinates are clamped to >= 0 and, with --image-folder (whose image headers
  give `width` / `height`, also stored in the record), to the image. A negative width/height is an error.
- The four candidates (the answer and the three `multiple_choices`) are written in a random order drawn
  per qa_id from --seed, so the answer is not always first; `answer_index` points at it.
"""
from __future__ import annotations

import argparse
import os
import random
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import read_json, write_jsonl

SPLITS = ('train', 'val', 'test')
OUTPUT_NAME = 'v7w_pointing_{split}.jsonl'


class V7WFormatError(ValueError):
    """The official files do not follow the Visual7W pointing format; the message names the entry."""


def box_table(boxes: list[dict]) -> dict[int, dict]:
    """box_id -> the official box object; a box without its fields or with a negative size is an error."""
    table = {}
    for k, box in enumerate(boxes):
        missing = [f for f in ('box_id', 'x', 'y', 'width', 'height') if f not in box]
        if missing:
            raise V7WFormatError(f"boxes[{k}]: missing field(s) {missing}")
        if box['width'] < 0 or box['height'] < 0:
            raise V7WFormatError(f"box {box['box_id']}: negative width/height ({box['width']}, {box['height']})")
        table[box['box_id']] = box
    return table


def to_xyxy(box: dict, size: tuple[int, int] | None = None) -> list:
    """Official x, y, width, height -> pixel xyxy clamped to the image (to >= 0 when its size is unknown)."""
    x0, y0 = max(box['x'], 0), max(box['y'], 0)
    x1, y1 = max(box['x'] + box['width'], x0), max(box['y'] + box['height'], y0)
    if size is not None:
        w, h = size
        x0, y0, x1, y1 = min(x0, w), min(y0, h), min(x1, w), min(y1, h)
    return [x0, y0, x1, y1]


def convert(dataset: dict, boxes: list[dict] | None = None, splits=SPLITS, image_size=None,
            seed: int = 0) -> dict[str, list[dict]]:
    """Records per split from the parsed dataset_v7w_pointing.json.

    boxes: extra box objects (a separate boxes file); image_size: a function filename -> (width, height),
    or None to leave sizes out and clamp only at 0.
    """
    if not isinstance(dataset, dict) or not isinstance(dataset.get('images'), list):
        raise V7WFormatError("expected an object with an 'images' list (dataset_v7w_pointing.json)")
    table = box_table(list(dataset.get('boxes') or []) + list(boxes or []))
    out = {split: [] for split in splits}
    for image in dataset['images']:
        missing = [f for f in ('image_id', 'filename', 'split', 'qa_pairs') if f not in image]
        if missing:
            raise V7WFormatError(f"image {image.get('image_id', '?')}: missing field(s) {missing}")
        if image['split'] not in out:
            continue
        size = image_size(image['filename']) if image_size is not None else None
        for qa in image['qa_pairs']:
            where = f"image {image['image_id']} qa {qa.get('qa_id', '?')}"
            missing = [f for f in ('qa_id', 'question', 'answer', 'multiple_choices') if f not in qa]
            if missing:
                raise V7WFormatError(f"{where}: missing field(s) {missing}")
            ids = [qa['answer'], *qa['multiple_choices']]
            unknown = [i for i in ids if i not in table]
            if unknown:
                raise V7WFormatError(f"{where}: box id(s) {unknown} not in the boxes list")
            # Seeded per qa_id (a string seed hashes deterministically): reruns give the same order.
            random.Random(f'v7w:{seed}:{qa["qa_id"]}').shuffle(ids)
            record = {
                'img_path': image['filename'], 'image_id': image['image_id'], 'qa_id': qa['qa_id'],
                'question': qa['question'],
                'candidates': [to_xyxy(table[i], size) for i in ids],
                'candidate_ids': ids,
                'candidate_names': [table[i].get('name') for i in ids],
                'answer_index': ids.index(qa['answer']),
            }
            if size is not None:
                record['width'], record['height'] = size
            out[image['split']].append(record)
    return out


def header_size_reader(image_folder: str):
    """filename -> (width, height) read from the image header (no decoding)."""
    from PIL import Image

    def size(filename: str) -> tuple[int, int]:
        path = os.path.join(image_folder, filename)
        if not os.path.isfile(path):
            raise V7WFormatError(f"image not found: {path}")
        with Image.open(path) as image:
            return image.size

    return size


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pointing', required=True, help='dataset_v7w_pointing.json of the official release')
    parser.add_argument('--boxes', help='a separate JSON of box objects (list or {"boxes": [...]}), if any')
    parser.add_argument('--image-folder', help='the Visual7W images (for sizes and clamping; recommended)')
    parser.add_argument('--out-dir', required=True, help='where v7w_pointing_<split>.jsonl are written')
    parser.add_argument('--splits', nargs='+', default=list(SPLITS), choices=SPLITS)
    parser.add_argument('--seed', type=int, default=0, help='seed of the candidate order (default 0)')
    args = parser.parse_args(argv)
    extra = None
    if args.boxes:
        extra = read_json(args.boxes, V7WFormatError)
        extra = extra.get('boxes') if isinstance(extra, dict) else extra
        if not isinstance(extra, list):
            raise V7WFormatError(f"{args.boxes}: expected a list of boxes or an object with a 'boxes' list")
    sizes = header_size_reader(args.image_folder) if args.image_folder else None
    pointing = read_json(args.pointing, V7WFormatError)
    records = convert(pointing, extra, splits=args.splits, image_size=sizes, seed=args.seed)
    written = {}
    for split in args.splits:
        path = os.path.join(args.out_dir, OUTPUT_NAME.format(split=split))
        write_jsonl(records[split], path)
        print(f"{split}: {len(records[split])} QA pairs -> {path}")
        written[split] = path
    return written


if __name__ == '__main__':
    try:
        main()
    except V7WFormatError as e:
        sys.exit(f"error: {e}")
