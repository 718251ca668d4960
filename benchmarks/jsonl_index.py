"""JSONL start-up and memory: the byte-offset index (`JsonlRecords`) against a list of parsed dicts.

    python benchmarks/jsonl_index.py [--lines 1000000] [--no-dataset]

Writes a REC-style JSONL (img_path, expression, bbox, height, width, ids; 150-250 bytes a line) of
`--lines` records to a temporary folder, then in this one process measures: the index build and the
load-time required-field check (the start-up of an AnnotationDataset without subclass checks), the
index's bytes per sample (its numpy arrays, and the growth of this process's RSS), the time of one
random access (read + parse), and, for comparison, `read_jsonl`'s list of dicts (time and RSS growth).
Unless `--no-dataset`, the table also shows RECDataset's start-up on the index: its box checks parse
every line once. Prints a table and a final JSON line; the issue's targets for 1M lines are start-up
(build + check) under 5 s and at most 100 bytes per sample.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mllm.dataset.utils.io import read_jsonl  # noqa: E402
from mllm.dataset.utils.jsonl_index import JsonlRecords  # noqa: E402

REQUIRED = ('img_path', 'expression', 'bbox')
WORDS = ('man woman dog cat horse car bus red blue green white black left right middle front back shirt '
         'table chair small large tall person the a on in near behind with café “sign”').split()
TARGET_STARTUP_S, TARGET_BYTES_PER_SAMPLE = 5.0, 100


def write_rec_jsonl(path: str, lines: int, seed: int = 0) -> int:
    """`lines` REC records like tools/prepare_data/refcoco.py writes; returns the file's size."""
    rng = random.Random(seed)
    with open(path, 'w', encoding='utf-8') as f:
        for _ in range(lines):
            width, height = rng.randint(240, 1024), rng.randint(240, 1024)
            x0, y0 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
            box = [round(x0, 2), round(y0, 2), round(rng.uniform(x0, width), 2), round(rng.uniform(y0, height), 2)]
            expression = ' '.join(rng.choices(WORDS, k=rng.randint(1, 7)))
            image_id = rng.randint(1, 581929)
            # json.dumps of the expression alone keeps the line valid JSON at a fraction of dumping the record.
            f.write(f'{{"img_path": "train2014/COCO_train2014_{image_id:012d}.jpg", '
                    f'"expression": {json.dumps(expression, ensure_ascii=False)}, "bbox": {box}, '
                    f'"height": {height}, "width": {width}, "dataset_name": "refcocog", '
                    f'"image_id": {image_id}}}\n')
    return os.path.getsize(path)


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def measure(path: str, lines: int, accesses: int, dataset: bool) -> tuple[dict, dict]:
    """(the JSON summary, extra rows for the table)."""
    before = rss()
    t0 = time.perf_counter()
    records = JsonlRecords(path)
    t1 = time.perf_counter()
    missing = records.missing_fields(REQUIRED)
    t2 = time.perf_counter()
    index_rss, index_nbytes = rss() - before, records.nbytes
    assert len(records) == lines and not missing, (len(records), missing)

    rng = random.Random(1)
    picks = [rng.randrange(lines) for _ in range(accesses)]
    records[0]  # the first access maps the file; time the steady state
    t3 = time.perf_counter()
    for i in picks:
        records[i]
    access_us = (time.perf_counter() - t3) / accesses * 1e6

    extra = {}
    if dataset:
        from mllm.dataset.single_image_dataset import RECDataset
        t4 = time.perf_counter()
        RECDataset(path)
        extra['RECDataset start-up on the index (s)'] = time.perf_counter() - t4
    del records

    before = rss()
    t5 = time.perf_counter()
    listed = read_jsonl(path)
    t6 = time.perf_counter()
    # What AnnotationDataset did with the list: look for the required fields in every record.
    bad = [r for r in listed if any(k not in r for k in REQUIRED)]
    extra['list field check (s)'] = time.perf_counter() - t6
    list_rss = rss() - before
    assert len(listed) == lines and not bad
    del listed

    summary = {'lines': lines, 'index_build_s': round(t1 - t0, 3), 'field_check_s': round(t2 - t1, 3),
               'index_bytes_per_sample': round(index_nbytes / lines, 2),
               'rss_bytes_per_sample': round(index_rss / lines, 2), 'random_access_us': round(access_us, 2),
               'list_build_s': round(t6 - t5, 3), 'list_rss_bytes_per_sample': round(list_rss / lines, 2)}
    return summary, extra


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--lines', type=int, default=1_000_000)
    parser.add_argument('--accesses', type=int, default=20_000, help='random accesses timed')
    parser.add_argument('--no-dataset', dest='dataset', action='store_false', help='skip the RECDataset row')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'REC_bench.jsonl')
        t = time.perf_counter()
        size = write_rec_jsonl(path, args.lines)
        print(f'wrote {args.lines} lines, {size / args.lines:.0f} bytes a line, in {time.perf_counter() - t:.1f} s')
        summary, extra = measure(path, args.lines, args.accesses, args.dataset)
    startup = summary['index_build_s'] + summary['field_check_s']
    rows = [('index build (s)', summary['index_build_s']), ('required-field check (s)', summary['field_check_s']),
            ('start-up = build + check (s)', round(startup, 3)),
            ('index bytes / sample (numpy arrays)', summary['index_bytes_per_sample']),
            ('index bytes / sample (RSS growth)', summary['rss_bytes_per_sample']),
            ('random access (us / record)', summary['random_access_us']),
            ('list of dicts: read_jsonl (s)', summary['list_build_s']),
            ('list of dicts: bytes / sample (RSS growth)', summary['list_rss_bytes_per_sample']),
            *((name, round(value, 3)) for name, value in extra.items())]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f'{name:<{width}}  {value:>12}')
    met = startup < TARGET_STARTUP_S and max(summary['index_bytes_per_sample'],
                                             summary['rss_bytes_per_sample']) <= TARGET_BYTES_PER_SAMPLE
    print(f"targets (start-up < {TARGET_STARTUP_S:g} s, <= {TARGET_BYTES_PER_SAMPLE} bytes/sample): "
          f"{'met' if met else 'MISSED'}")
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
