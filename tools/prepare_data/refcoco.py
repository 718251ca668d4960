"""RefCOCO / RefCOCO+ / RefCOCOg (official refer release) -> REC/REG JSONL, one record per sentence.

Reads the layout of https://github.com/lichengunc/refer (archives refcoco.zip, refcoco+.zip and
refcocog.zip from https://bvisionweb1.cs.unc.edu/licheng/referit/data/ -- also on web.archive.org --,
unzipped under one folder):

    <data_root>/refcoco/refs(unc).p   refs(google).p   instances.json
    <data_root>/refcoco+/refs(unc).p                   instances.json
    <data_root>/refcocog/refs(umd).p  refs(google).p   instances.json

`refs(<split_by>).p` is a pickled list of refs ({ref_id, ann_id, image_id, split, category_id,
file_name, sentences=[{tokens, raw, sent_id, sent}], sent_ids}); `instances.json` (COCO format,
read with pycocotools) gives each ann's [x, y, w, h] box and each image's file name and size. All
images are COCO train2014 (`COCO_train2014_*.jpg`). Output, per dataset and split present:

    REC_<dataset>_<split_by>_<split>.jsonl   e.g. REC_refcoco_unc_testA.jsonl, REC_refcocog_umd_val.jsonl
    REC_ref3_train.jsonl                     (--ref3) train of refcoco(unc) + refcoco+(unc) + refcocog(umd)

Each line: {img_path, expression, bbox (pixel xyxy), dataset_name, split, height, width, image_id,
ann_id, ref_id, sent_id} -- the fields Shikra's REC_*.jsonl carry, so RECDataset / REGDataset read
both. Command:

    python tools/prepare_data/refcoco.py --data-root /data/refer/data --output-dir /data/annotations --ref3

The three datasets split COCO images independently: refcocog(umd) train holds images of refcoco(unc)
val/testA/testB, and refcoco+ shares refcoco's images. A ref3 model trained on those images has seen
the evaluation images, so REC_ref3_train.jsonl leaves out every train record whose image is in any
evaluation split (every split but `train` of every dataset converted in this run);
--keep-eval-images-in-train keeps them (the plain union of the three train splits). Either way the
overlap found is printed, per train source and evaluation split.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

from pycocotools.coco import COCO

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import write_jsonl

# The splits Shikra evaluates on and trains with (dataset, split_by).
DEFAULT_DATASETS = (('refcoco', 'unc'), ('refcoco+', 'unc'), ('refcocog', 'umd'))
REF3 = DEFAULT_DATASETS
REF3_TRAIN_FILE = 'REC_ref3_train.jsonl'
REF_FIELDS = ('ref_id', 'ann_id', 'image_id', 'split', 'sentences')


class ReferFormatError(ValueError):
    """An official refer file does not hold what the release format promises; names file and ref."""


def _fix_py2_text(value):
    """Strings of a Python 2 pickle read as latin-1 hold UTF-8 bytes; decode them back."""
    if isinstance(value, str):
        try:
            return value.encode('latin-1').decode('utf-8')
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    if isinstance(value, list):
        return [_fix_py2_text(v) for v in value]
    if isinstance(value, dict):
        return {_fix_py2_text(k): _fix_py2_text(v) for k, v in value.items()}
    return value


def load_refs(path: str) -> list[dict]:
    """The refs list of a `refs(<split_by>).p` file (written by Python 2; plain ASCII loads as is)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"refs file not found: {path}")
    with open(path, 'rb') as f:
        try:
            refs = pickle.load(f)
        except UnicodeDecodeError:  # a Python 2 `str` with non-ASCII bytes
            f.seek(0)
            refs = _fix_py2_text(pickle.load(f, encoding='latin-1'))
    if not isinstance(refs, list):
        raise ReferFormatError(f"{path}: expected a pickled list of refs, got {type(refs).__name__}")
    return refs


def load_instances(path: str) -> COCO:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"instances file not found: {path}")
    return COCO(path)


def convert_refs(refs: list[dict], coco: COCO, dataset_name: str, refs_path: str = 'refs',
                 instances_path: str = 'instances.json') -> dict[str, list[dict]]:
    """{split: records}, one record per sentence, in the order of the refs file."""
    out: dict[str, list[dict]] = {}
    for k, ref in enumerate(refs):
        where = f"{refs_path}: ref #{k} (ref_id={ref.get('ref_id')})"
        missing = [f for f in REF_FIELDS if f not in ref]
        if missing:
            raise ReferFormatError(f"{where}: missing field(s) {missing}")
        ann = coco.anns.get(ref['ann_id'])
        if ann is None:
            raise ReferFormatError(f"{where}: ann_id {ref['ann_id']} is not in {instances_path}")
        image = coco.imgs.get(ref['image_id'])
        if image is None:
            raise ReferFormatError(f"{where}: image_id {ref['image_id']} is not in {instances_path}")
        if ann['image_id'] != ref['image_id']:
            raise ReferFormatError(f"{where}: ann {ref['ann_id']} belongs to image {ann['image_id']}, "
                                   f"not {ref['image_id']}")
        x, y, w, h = (float(v) for v in ann['bbox'])
        for s, sent in enumerate(ref['sentences']):
            if 'sent' not in sent or 'sent_id' not in sent:
                raise ReferFormatError(f"{where}: sentence #{s} lacks 'sent' or 'sent_id'")
            out.setdefault(ref['split'], []).append({
                # The ref's own file_name carries an ann suffix (COCO_train2014_..._16.jpg): use the image's.
                'img_path': image['file_name'],
                'expression': sent['sent'],
                'bbox': [x, y, x + w, y + h],
                'dataset_name': dataset_name,
                'split': ref['split'],
                'height': image['height'],
                'width': image['width'],
                'image_id': ref['image_id'],
                'ann_id': ref['ann_id'],
                'ref_id': ref['ref_id'],
                'sent_id': sent['sent_id'],
            })
    return out


def convert(data_root: str, dataset: str, split_by: str) -> dict[str, list[dict]]:
    """Read <data_root>/<dataset>/refs(<split_by>).p + instances.json; return {split: records}."""
    folder = os.path.join(data_root, dataset)
    refs_path = os.path.join(folder, f'refs({split_by}).p')
    instances_path = os.path.join(folder, 'instances.json')
    refs = load_refs(refs_path)
    return convert_refs(refs, load_instances(instances_path), dataset, refs_path, instances_path)


def split_file_name(dataset: str, split_by: str, split: str) -> str:
    return f'REC_{dataset}_{split_by}_{split}.jsonl'


def source_name(dataset: str, split_by: str, split: str) -> str:
    return f'{dataset}({split_by}) {split}'


def eval_image_splits(converted: dict[tuple[str, str], dict[str, list[dict]]]) -> dict[int, list[str]]:
    """image_id -> the evaluation splits (every split but train, of every converted dataset) holding it."""
    where: dict[int, list[str]] = {}
    for (dataset, split_by), splits in converted.items():
        for split, records in splits.items():
            if split == 'train':
                continue
            name = source_name(dataset, split_by, split)
            for image_id in dict.fromkeys(r['image_id'] for r in records):
                where.setdefault(image_id, []).append(name)
    return where


def ref3_overlap(converted: dict[tuple[str, str], dict[str, list[dict]]]) -> list[dict]:
    """Per ref3 train source: its images / expressions that are also in an evaluation split.

    Each entry: {source, images, expressions (counts on evaluation images), total_images,
    total_expressions, by_split: {evaluation split: (images, expressions)}}; counts are distinct
    images and records (one record = one expression).
    """
    where = eval_image_splits(converted)
    rows = []
    for dataset, split_by in REF3:
        train = converted[(dataset, split_by)].get('train', [])
        hit = [r for r in train if r['image_id'] in where]
        images: dict[str, set] = {}
        expressions: dict[str, int] = {}
        for r in hit:
            for name in where[r['image_id']]:
                images.setdefault(name, set()).add(r['image_id'])
                expressions[name] = expressions.get(name, 0) + 1
        rows.append({'source': source_name(dataset, split_by, 'train'),
                     'images': len({r['image_id'] for r in hit}), 'expressions': len(hit),
                     'total_images': len({r['image_id'] for r in train}), 'total_expressions': len(train),
                     'by_split': {name: (len(images[name]), expressions[name]) for name in images}})
    return rows


def ref3_train(converted: dict[tuple[str, str], dict[str, list[dict]]],
               keep_eval_images: bool = False) -> list[dict]:
    """Train records of refcoco(unc) + refcoco+(unc) + refcocog(umd), in that order.

    Records whose image is in an evaluation split of any converted dataset are left out unless
    keep_eval_images (see the module docstring for why).
    """
    missing = [f'{d}({s})' for d, s in REF3 if (d, s) not in converted]
    if missing:
        raise ValueError(f"the ref3 train file needs {missing} as well")
    train = [r for d, s in REF3 for r in converted[(d, s)].get('train', [])]
    if keep_eval_images:
        return train
    where = eval_image_splits(converted)
    return [r for r in train if r['image_id'] not in where]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def overlap_report(overlap: list[dict], kept: bool) -> list[str]:
    """The lines main prints about ref3 train images found in evaluation splits."""
    action = ('kept (--keep-eval-images-in-train)' if kept
              else 'removed (--keep-eval-images-in-train keeps them)')
    lines = [f"{REF3_TRAIN_FILE}: train images that are also in an evaluation split, {action}:"]
    for row in overlap:
        lines.append(f"  {row['source']}: {row['images']} of {_plural(row['total_images'], 'image')}, "
                     f"{row['expressions']} of {_plural(row['total_expressions'], 'expression')}")
        lines += [f"    in {name}: {_plural(images, 'image')}, {_plural(count, 'expression')}"
                  for name, (images, count) in row['by_split'].items()]
    hit, total = sum(row['expressions'] for row in overlap), sum(row['total_expressions'] for row in overlap)
    lines.append(f"  all sources: {hit} of {_plural(total, 'expression')} {'kept' if kept else 'removed'}")
    return lines


def parse_dataset(text: str) -> tuple[str, str]:
    dataset, sep, split_by = text.partition(':')
    if not sep or dataset not in ('refcoco', 'refcoco+', 'refcocog') or not split_by:
        raise argparse.ArgumentTypeError(f"expected refcoco:unc, refcoco+:unc, refcocog:umd, ...; got {text!r}")
    return dataset, split_by


def _convert_for(data_root: str, dataset: str, split_by: str, needed_by: str) -> dict[str, list[dict]]:
    """convert(), with a missing or malformed file turned into a one-line exit naming the flag."""
    try:
        return convert(data_root, dataset, split_by)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e} (needed by {needed_by}; unzip {dataset}.zip under --data-root "
                         f"or leave {dataset}:{split_by} out)") from None
    except ReferFormatError as e:
        raise SystemExit(f"error: {e}") from None


def main(argv=None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--data-root', required=True, help='folder holding refcoco/, refcoco+/, refcocog/')
    parser.add_argument('--output-dir', required=True)
    parser.add_argument('--datasets', nargs='+', type=parse_dataset, default=list(DEFAULT_DATASETS),
                        metavar='NAME:SPLIT_BY', help='default: refcoco:unc refcoco+:unc refcocog:umd')
    parser.add_argument('--ref3', action='store_true', help=f'also write {REF3_TRAIN_FILE}')
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument('--keep-eval-images-in-train', action='store_true',
                      help=f'keep {REF3_TRAIN_FILE} records whose image is in a val/test split (default: drop them)')
    keep.add_argument('--exclude-eval-images', action='store_true',
                      help='the default now (kept so older commands still run)')
    args = parser.parse_args(argv)

    # Read everything before writing anything, so a missing file leaves no half-written output.
    converted = {}
    for dataset, split_by in dict.fromkeys(args.datasets):
        converted[(dataset, split_by)] = _convert_for(args.data_root, dataset, split_by,
                                                      f'--datasets {dataset}:{split_by}')
    if args.ref3:
        ref3 = ' '.join(f'{d}:{s}' for d, s in REF3)
        for d in REF3:
            if d not in converted:
                converted[d] = _convert_for(args.data_root, *d, f'--ref3, the train splits of {ref3}')

    written = {}
    for dataset, split_by in dict.fromkeys(args.datasets):
        for split, records in sorted(converted[(dataset, split_by)].items()):
            name = split_file_name(dataset, split_by, split)
            write_jsonl(records, os.path.join(args.output_dir, name))
            written[name] = len(records)
    if args.ref3:
        records = ref3_train(converted, args.keep_eval_images_in_train)
        write_jsonl(records, os.path.join(args.output_dir, REF3_TRAIN_FILE))
        written[REF3_TRAIN_FILE] = len(records)
        print('\n'.join(overlap_report(ref3_overlap(converted), args.keep_eval_images_in_train)))
    for name, count in written.items():
        print(f"{os.path.join(args.output_dir, name)}: {count} records")
    return written


if __name__ == '__main__':
    main()
