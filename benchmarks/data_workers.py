"""DataLoader workers and the token cache on bench-small (config/bench/bench_small_llava.py): one table, one JSON line.

    python benchmarks/data_workers.py                      # ~4 min on an idle 2-core machine, more when loaded
    python benchmarks/data_workers.py --workers 0,2 --prep-samples 256 --steps 5 --warmup 2 --out r.json

(i) Preparing samples alone: a DataLoader over the training dataset (PNG decode, CLIP preprocessing, template,
    tokenisation, the train collator, batch 8), every sample once in a fixed shuffled order, for each number of
    workers and token cache off / cold (a new directory) / warm (the directory the cold pass filled, read from disk:
    every store is closed between passes, as between runs). Worker start-up is inside the timing: the trainer
    starts its workers anew every epoch.
(ii) Training: finetune.main on the same config with --dataloader_num_workers N (no cache; group_by_length, batch 8),
    `warmup` unmeasured steps then `steps` measured: real tokens/s (attention-mask ones, 196 image tokens each
    sample), samples/s, step time, with the fp32 2048^3 matmul peak (the anchor's) and the load average before
    each run, since the machine is shared.

The model is the TRL anchor's bench-small, built and saved as benchmarks/train_vs_trl.py does.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))

import torch  # noqa: E402
from train_vs_trl import CONFIG, DEFAULT_ANCHOR, load_anchor, save_bench_small  # noqa: E402

BATCH = 8


def base_argv(model_dir: str, data_dir: Path, out_dir: str) -> list[str]:
    return [str(CONFIG), '--cfg-options', f'model_args.model_name_or_path={model_dir}',
            f'data_args.train.filename={data_dir}/llava_format.json', f'data_args.train.image_folder={data_dir}',
            '--output_dir', out_dir]


# -- (i) preparing samples ---------------------------------------------------------------------------
def prep_passes(model_dir: str, data_dir: Path, tmp: str, workers: list[int], n_samples: int) -> list[dict]:
    from torch.utils.data import DataLoader

    from mllm.config import prepare_args
    from mllm.dataset import token_cache
    from mllm.dataset.builder import build_raw_data, prepare_data
    from mllm.models import build_model

    _, model_args, data_args, _ = prepare_args(base_argv(model_dir, data_dir, os.path.join(tmp, 'prep')))
    raw = build_raw_data(data_args)
    _, family = build_model(model_args)
    collator = family.collator('train', **(data_args.get('collator_kwargs') or {}))
    conv_args = dict(model_args.conv_args)

    def dataset(cache_dir):
        return prepare_data(data_args, {'conv_args': dict(conv_args, token_cache=cache_dir)}, family, raw)['train']

    total = len(dataset(None))
    order = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:min(n_samples, total)].tolist()

    def one_pass(ds, w):
        if w == 0:  # in this process: time `tokenize` itself (cache lookup included) as well
            inner, spent = ds.tokenize, []

            def timed(*a, **kw):
                t = time.perf_counter()
                out = inner(*a, **kw)
                spent.append(time.perf_counter() - t)
                return out
            ds.tokenize = timed
        loader = DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=w, collate_fn=collator)
        t0 = time.perf_counter()
        samples = sum(batch['input_ids'].shape[0] for batch in loader)
        seconds = time.perf_counter() - t0  # non-persistent workers have exited (and written their tail) here
        token_cache.close_all()
        return samples, seconds, (1000 * sum(spent) / len(spent) if w == 0 else None)

    rows = []
    for w in workers:
        cache_dir = tempfile.mkdtemp(prefix=f'tokens_w{w}_', dir=tmp)
        for label, cache in (('off', None), ('cold', cache_dir), ('warm', cache_dir)):
            ds = dataset(cache)
            samples, seconds, tokenize_ms = one_pass(ds, w)
            stats = ds.token_cache.stats() if ds.token_cache is not None and w == 0 else None
            rows.append({'workers': w, 'cache': label, 'samples': samples, 'seconds': round(seconds, 3),
                         'samples_per_s': round(samples / seconds, 2), 'cache_stats_main': stats,
                         'tokenize_ms_per_sample': None if tokenize_ms is None else round(tokenize_ms, 3)})
            extra = f'  tokenize {tokenize_ms:.3f} ms/sample {stats or ""}' if w == 0 else ''
            print(f'[prep] workers={w} cache={label:<4} {samples} samples in {seconds:6.2f}s = '
                  f'{samples / seconds:7.1f} samples/s{extra}', flush=True)
    return rows


# -- (ii) training -----------------------------------------------------------------------------------
def train_run(anchor, model_dir: str, data_dir: Path, out_dir: str, workers: int, warmup: int, steps: int) -> dict:
    from transformers import TrainerCallback

    import mllm.pipeline.finetune as finetune

    ends = []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    base = finetune.MllmTrainer
    real, images = [], []

    class BenchTrainer(base):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), Timer()], **kw)

        def training_step(self, model, inputs, num_items_in_batch=None):
            real.append(int(inputs['attention_mask'].sum()))
            images.append(int(inputs['input_ids'].shape[0]))
            return super().training_step(model, inputs, num_items_in_batch)

    argv = [*base_argv(model_dir, data_dir, out_dir), '--max_steps', str(warmup + steps),
            '--dataloader_num_workers', str(workers)]
    peak = anchor.matmul_peak()['gflops_median']
    load = anchor.loadavg()
    finetune.MllmTrainer = BenchTrainer
    try:
        t0 = time.perf_counter()
        finetune.main(argv)
        wall = time.perf_counter() - t0
    finally:
        finetune.MllmTrainer = base
    window = ends[-1] - ends[warmup - 1]
    measured = real[warmup:warmup + steps]
    res = {'workers': workers, 'measured_steps': len(measured), 'window_s': round(window, 3),
           'step_time_s': round(window / len(measured), 3),
           'step_times_s': [round(e - s, 3) for s, e in zip(ends[warmup - 1:-1], ends[warmup:], strict=True)],
           'real_tokens_per_s': round(sum(measured) / window, 1),
           'samples_per_s': round(sum(images[warmup:warmup + steps]) / window, 3),
           'train_wall_s': round(wall, 1), 'matmul_peak_gflops': round(peak, 1), 'loadavg_before': load}
    print(f'[train] workers={workers}: step {res["step_time_s"]:.3f}s (median '
          f'{statistics.median(res["step_times_s"]):.3f}s), {res["real_tokens_per_s"]:.0f} real tok/s, '
          f'{res["samples_per_s"]:.2f} samples/s, peak {peak:.0f} GFLOP/s, load {load}', flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--workers', default='0,1,2', help='numbers of DataLoader workers, comma separated')
    ap.add_argument('--prep-samples', type=int, default=512, help='samples per preparation pass (at most 512)')
    ap.add_argument('--steps', type=int, default=10, help='measured training steps')
    ap.add_argument('--warmup', type=int, default=3, help='unmeasured warm-up steps (worker start-up falls here)')
    ap.add_argument('--skip-train', action='store_true', help='preparation passes only')
    ap.add_argument('--anchor', default=str(DEFAULT_ANCHOR), help='folder of bench_trl.py and data/')
    ap.add_argument('--out', default=None, help='write every figure as JSON here')
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(',') if w.strip()]
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import logging

    import transformers
    transformers.logging.set_verbosity_error()
    logging.getLogger('mllm').setLevel(logging.WARNING)

    anchor_dir = Path(args.anchor).resolve()
    anchor = load_anchor(anchor_dir)
    data_dir = anchor_dir / 'data'
    anchor.ensure_data(str(data_dir))
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix='mllm_data_workers_') as tmp:
        model_dir = os.path.join(tmp, 'bench_small')
        save_bench_small(anchor, data_dir, model_dir)
        prep = prep_passes(model_dir, data_dir, tmp, workers, args.prep_samples)
        train = [] if args.skip_train else [
            train_run(anchor, model_dir, data_dir, os.path.join(tmp, f'train_w{w}'), w, args.warmup, args.steps)
            for w in workers]

    print('\n| preparing samples (batch 8) | ' + ' | '.join(f'workers={w}' for w in workers) + ' |')
    print('| --- |' + ' ---: |' * len(workers))
    for label in ('off', 'cold', 'warm'):
        cells = [next(r for r in prep if r['workers'] == w and r['cache'] == label)['samples_per_s'] for w in workers]
        print(f'| samples/s, token cache {label} | ' + ' | '.join(f'{c:.1f}' for c in cells) + ' |')
    for r in (r for r in prep if r['tokenize_ms_per_sample'] is not None):
        print(f'| tokenize ms/sample (workers=0), cache {r["cache"]} | {r["tokenize_ms_per_sample"]:.3f} |')
    if train:
        print('\n| training (bench-small, batch 8) | ' + ' | '.join(f'workers={r["workers"]}' for r in train) + ' |')
        print('| --- |' + ' ---: |' * len(train))
        for key, label in (('step_time_s', 'step time (s)'), ('real_tokens_per_s', 'real tokens/s'),
                           ('samples_per_s', 'samples/s'), ('matmul_peak_gflops', 'matmul peak before (GFLOP/s)')):
            print(f'| {label} | ' + ' | '.join(str(r[key]) for r in train) + ' |')
    line = {'threads': torch.get_num_threads(), 'cpus': os.cpu_count(), 'prep_samples': prep[0]['samples'],
            'steps': args.steps, 'warmup': args.warmup, 'total_wall_s': round(time.time() - t_start, 1)}
    for r in prep:
        line[f'prep_w{r["workers"]}_cache_{r["cache"]}_samples_per_s'] = r['samples_per_s']
        if r['tokenize_ms_per_sample'] is not None:
            line[f'tokenize_ms_cache_{r["cache"]}'] = r['tokenize_ms_per_sample']
    for r in train:
        line[f'train_w{r["workers"]}_real_tokens_per_s'] = r['real_tokens_per_s']
        line[f'train_w{r["workers"]}_step_time_s'] = r['step_time_s']
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'summary_line': line, 'prep': prep, 'train': train}, f, indent=1)
    print(json.dumps(line))
    return line


if __name__ == '__main__':
    with contextlib.suppress(BrokenPipeError):
        main()
