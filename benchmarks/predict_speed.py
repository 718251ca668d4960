"""Prediction speed: batched greedy generation through finetune.py at batch 1, 4 and 16, and with 2 processes.

    python benchmarks/predict_speed.py [--samples 64] [--out exp/predict_speed] [--model tiny | <checkpoint dir>]
                                       [--rows 1x1,4x1,16x1,16x1s,16x2]

Each row runs `finetune.py config/demo/shapes_rec_tiny_llava.py --do_train False` on the same held-out shapes
images (generated on first use) and reads what the trainer itself measured (`multitest_*_results.json`:
runtime, samples/s). Every row must write the same predictions, line for line (left padding makes greedy decoding
independent of the batch size); the script fails otherwise. A row ending in `s` generates with transformers'
static KV cache (`gen_kwargs.cache_implementation=static`) instead of the default dynamic one. Prints a table
and a final JSON line with `batch16_vs_batch1` (the issue's target: at least 6). The model is the demo's tiny
LLaVA with random weights (`--model tiny`: its answers differ per image, so a reordering would show) or a trained
checkpoint directory.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'config', 'demo', 'shapes_rec_tiny_llava.py')
PREFIX = 'multitest_shapes_test'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_row(out_dir: str, data_root: str, samples: int, batch: int, processes: int, model: str,
            static: bool = False) -> dict:
    launcher = [sys.executable]
    if processes > 1:
        launcher = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(processes),
                    '--master_port', str(_free_port())]
    cmd = [*launcher, os.path.join(REPO, 'mllm', 'pipeline', 'finetune.py'), CONFIG, '--cfg-options',
           f'data_args.prepare.0.root={data_root}', 'data_args.prepare.0.num_train=8',
           f'data_args.prepare.0.num_test={samples}',
           f'data_args.multitest.shapes_test.cfg.filename={data_root}/test.jsonl',
           f'data_args.multitest.shapes_test.cfg.image_folder={data_root}/images',
           f'data_args.train.filename={data_root}/train.jsonl', f'data_args.train.image_folder={data_root}/images',
           'data_args.validation=None', f'model_args.model_name_or_path={model}',
           *(['data_args.gen_kwargs.cache_implementation=static'] if static else []),
           '--do_train', 'False', '--eval_strategy', 'no', '--per_device_eval_batch_size', str(batch),
           '--output_dir', out_dir]
    env = dict(os.environ, HF_HUB_OFFLINE='1', TOKENIZERS_PARALLELISM='false')
    if processes > 1:
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 2) // processes))
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f'batch {batch} x {processes} process(es) failed:\n{run.stderr[-3000:]}')
    with open(os.path.join(out_dir, f'{PREFIX}_results.json')) as f:
        results = json.load(f)
    with open(os.path.join(out_dir, f'{PREFIX}_extra_prediction.jsonl')) as f:
        predictions = [json.loads(line)['pred'] for line in f]
    return {'batch': batch, 'processes': processes, 'cache': 'static' if static else 'dynamic',
            'samples': results[f'{PREFIX}_total'],
            'runtime_s': results[f'{PREFIX}_runtime'], 'samples_per_s': results[f'{PREFIX}_samples_per_second'],
            'wall_s': round(time.perf_counter() - start, 1), 'predictions': predictions}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--samples', type=int, default=64)
    parser.add_argument('--out', default=os.path.join(REPO, 'exp', 'predict_speed'))
    parser.add_argument('--model', default='tiny')
    parser.add_argument('--rows', default='1x1,4x1,16x1,16x1s,16x2',
                        help='batch x processes, comma separated; a trailing s: static KV cache')
    args = parser.parse_args(argv)
    data_root = os.path.join(args.out, 'data')
    rows = []
    for spec in args.rows.split(','):
        static = spec.endswith('s')
        batch, processes = (int(x) for x in spec.rstrip('s').split('x'))
        rows.append(run_row(os.path.join(args.out, f"b{batch}_p{processes}{'_static' if static else ''}"), data_root,
                            args.samples, batch, processes, args.model, static))
    reference = rows[0]['predictions']
    for row in rows:
        if row['predictions'] != reference:
            differ = sum(a != b for a, b in zip(row['predictions'], reference, strict=True))
            raise SystemExit(f"batch {row['batch']} x {row['processes']}: {differ} predictions differ from "
                             f"batch {rows[0]['batch']} x {rows[0]['processes']}")
    base = rows[0]['samples_per_s']
    print(f"{'batch':>5} {'procs':>5} {'cache':>7} {'samples':>7} {'runtime s':>9} {'samples/s':>9} {'vs first':>8}")
    for row in rows:
        print(f"{row['batch']:>5} {row['processes']:>5} {row['cache']:>7} {row['samples']:>7} {row['runtime_s']:>9.2f} "
              f"{row['samples_per_s']:>9.2f} {row['samples_per_s'] / base:>8.2f}")
    by = {(r['batch'], r['processes']): r['samples_per_s'] for r in rows if r['cache'] == 'dynamic'}
    name = lambda r: f"b{r['batch']}_p{r['processes']}{'_static' if r['cache'] == 'static' else ''}"  # noqa: E731
    summary = {'identical_predictions': True, 'samples': args.samples,
               **{f"{name(r)}_samples_per_s": r['samples_per_s'] for r in rows}}
    if (1, 1) in by and (16, 1) in by:
        summary['batch16_vs_batch1'] = round(by[(16, 1)] / by[(1, 1)], 2)
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
