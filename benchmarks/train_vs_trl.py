"""mllm vs TRL on bench-small (the TRL performance anchor, ../shared/bench/trl): one table, one JSON line.

    python benchmarks/train_vs_trl.py                   # ~10 min on an idle 2-core machine
    python benchmarks/train_vs_trl.py --systems mllm,trl_default --repeats 1 --steps 20 --warmup 3 --out r.json
    # needs TRL for the TRL systems: pip install -e .[bench]

Everything runs in ONE process, alternating systems (repeats are the outer loop), with the same torch thread count,
and the anchor's fp32 2048^3 matmul peak measured right before (and after) every run. Systems:

  mllm          finetune.py on config/bench/bench_small_llava.py: group_by_length sampling (modality-aware,
                lengths estimated without opening images) + trim_logits
  mllm_random   the same with --train_sampling_strategy random (padding like TRL's default)
  mllm_packed   random sampling, each batch's 8 samples packed into rows of at most 640 tokens (the longest
                sample is 632): positions restart per sample, attention blocked between samples
  trl_default   the anchor's `baseline` (TRL SFTTrainer, random sampler, right padding to the batch's longest)
  trl_grouped   the anchor's `group_by_length` (transformers' LengthGroupedSampler on precomputed lengths)

The model is the anchor's own: built by the anchor's `build_model` (LlavaForConditionalGeneration, its LlavaConfig,
torch.manual_seed(0)), saved once with the anchor's tokenizer and CLIP processor (PIL backend, 224 px) into a temp
dir, which mllm loads as a LLaVA-format checkpoint. The anchor file is imported by path: TRL runs are its
`run_once`, FLOPs are its `flops_for_batch`, the peak its `matmul_peak`, so both systems are measured alike:
window = end of the last warm-up step to the end of the last step; tokens real = attention-mask ones (incl. 196
image tokens per sample), padded = batch x padded length, supervised = labels[:, 1:] != -100;
MFU = FLOPs / window / peak before the run; cpu_share = process CPU seconds / (window x threads).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_ANCHOR = REPO.parent / 'shared' / 'bench' / 'trl'
CONFIG = REPO / 'config' / 'bench' / 'bench_small_llava.py'
ALL_SYSTEMS = ('mllm', 'trl_default', 'mllm_random', 'trl_grouped', 'mllm_packed')
PACK_TOKENS = 640  # mllm_packed: the row budget (the anchor's longest sample is 632 tokens)
TRL_CONFIG = {'trl_default': 'baseline', 'trl_grouped': 'group_by_length'}

import torch  # noqa: E402


def load_anchor(anchor_dir: Path):
    """bench_trl.py as a module (its folder goes on sys.path for its own `import make_data`)."""
    sys.path.insert(0, str(anchor_dir))
    spec = importlib.util.spec_from_file_location('bench_trl_anchor', anchor_dir / 'bench_trl.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_bench_small(anchor, data_dir: Path, out_dir: str):
    """The anchor's bench-small (same code path, seed 0) + its tokenizer and image processor, LLaVA format."""
    import make_data  # the anchor's; on sys.path after load_anchor
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(data_dir / 'tokenizer'))
    model = anchor.build_model(tok)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    make_data.build_processor(tok).image_processor.save_pretrained(out_dir)
    return tok, model


def kept_logits(keep, mask) -> int:
    """Positions the LM head computes: all (no trimming), the last K columns (an int) or a boolean mask."""
    if keep is None:
        return int(mask.numel())
    if isinstance(keep, torch.Tensor) and keep.dtype == torch.bool:
        return int(keep.sum()) * (1 if keep.shape == mask.shape else mask.shape[0])
    return int(keep) * mask.shape[0]


# -- mllm run ----------------------------------------------------------------------------------------
def run_mllm(system: str, anchor, model_dir: str, data_dir: Path, out_dir: str, warmup: int, steps: int) -> dict:
    """Train through finetune.main with a timing trainer subclass; the same figures as the anchor's run_once."""
    from transformers import TrainerCallback

    import mllm.pipeline.finetune as finetune

    class Timer(TrainerCallback):
        def __init__(self):
            self.t_begin, self.t_end, self.cpu_end = None, [], []

        def on_train_begin(self, args, state, control, **kw):
            self.t_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.t_end.append(time.perf_counter())
            self.cpu_end.append(time.process_time())

    timer = Timer()
    base = finetune.MllmTrainer

    class BenchTrainer(base):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), timer], **kw)
            self.bench_batches, self.bench_fwd_bwd, self.bench_collate = [], [], []
            inner = self.data_collator

            def timed(samples):
                t0 = time.perf_counter()
                out = inner(samples)
                self.bench_collate.append(time.perf_counter() - t0)
                return out
            self.data_collator = timed

        def training_step(self, model, inputs, num_items_in_batch=None):
            lab = inputs['labels']
            rows, width = inputs['input_ids'].shape
            if 'sample_lengths' in inputs:  # a packed batch: no attention mask, the samples' lengths recorded
                seq_lens = [int(x) for x in inputs['sample_lengths']]
                am = torch.ones(rows, width, dtype=torch.long)  # for kept_logits: every position is a row slot
            else:
                am = inputs['attention_mask']
                seq_lens = [int(x) for x in am.sum(1)]
            image_id = self.accelerator.unwrap_model(model).config.image_token_index
            self.bench_batches.append({
                'bsz': int(rows), 'seq_len': int(width), 'seq_lens': seq_lens,
                'real_tokens': sum(seq_lens), 'padded_tokens': int(rows * width),
                'image_tokens': int((inputs['input_ids'] == image_id).sum()),
                'supervised_tokens': int((lab[:, 1:] != -100).sum()),
                'images': int(inputs['pixel_values'].shape[0]) if 'pixel_values' in inputs else 0,
                'logits_kept': kept_logits(inputs.get('logits_to_keep'), am)})
            t0 = time.perf_counter()
            out = super().training_step(model, inputs, num_items_in_batch)
            self.bench_fwd_bwd.append(time.perf_counter() - t0)
            return out

    strategy = 'group_by_length' if system == 'mllm' else 'random'
    packing = [f'data_args.collator_kwargs.pack_tokens={PACK_TOKENS}'] if system == 'mllm_packed' else []
    argv = [str(CONFIG), '--cfg-options', f'model_args.model_name_or_path={model_dir}',
            f'data_args.train.filename={data_dir}/llava_format.json', f'data_args.train.image_folder={data_dir}',
            *packing,
            '--max_steps', str(warmup + steps), '--output_dir', out_dir, '--train_sampling_strategy', strategy]
    finetune.MllmTrainer = BenchTrainer
    anchor.reset_peak_rss()
    try:
        t0 = time.perf_counter()
        trainer = finetune.main(argv)
        wall = time.perf_counter() - t0
    finally:
        finetune.MllmTrainer = base
    total = warmup + steps
    ends = timer.t_end
    assert len(ends) == total, (len(ends), total)
    step_times = [e - s for s, e in zip([timer.t_begin, *ends[:-1]], ends, strict=True)]
    window = ends[-1] - ends[warmup - 1]
    batches = trainer.bench_batches[warmup:total]
    tot = {k: sum(b[k] for b in batches) for k in ('real_tokens', 'padded_tokens', 'image_tokens',
                                                     'supervised_tokens', 'images', 'bsz')}
    log = trainer.state.log_history
    res = {
        'config': system, 'train_sampling_strategy': strategy, 'steps_total': total, 'warmup_steps': warmup,
        'measured_steps': len(batches), 'train_wall_s': wall, 'window_s': window,
        'cpu_share': (timer.cpu_end[-1] - timer.cpu_end[warmup - 1]) / window / torch.get_num_threads(),
        'step_time_mean_s': window / len(batches),
        'step_time_median_s': statistics.median(step_times[warmup:total]),
        'step_times_s': [round(x, 4) for x in step_times],
        'collate_s_mean': statistics.mean(trainer.bench_collate[warmup:total]),
        'fwd_bwd_s_mean': statistics.mean(trainer.bench_fwd_bwd[warmup:total]),
        'samples': tot['bsz'], 'real_tokens': tot['real_tokens'], 'padded_tokens': tot['padded_tokens'],
        'image_tokens': tot['image_tokens'], 'text_tokens': tot['real_tokens'] - tot['image_tokens'],
        'supervised_tokens': tot['supervised_tokens'],
        'padding_fraction': 1 - tot['real_tokens'] / tot['padded_tokens'],
        'real_tokens_per_s': tot['real_tokens'] / window, 'padded_tokens_per_s': tot['padded_tokens'] / window,
        'text_tokens_per_s': (tot['real_tokens'] - tot['image_tokens']) / window,
        'supervised_tokens_per_s': tot['supervised_tokens'] / window, 'samples_per_s': tot['bsz'] / window,
        'losses': [round(e['loss'], 4) for e in log if 'loss' in e],
        'peak_rss_gib': round(anchor.peak_rss_gib(), 2),
        'batch_seq_len': [b['seq_len'] for b in trainer.bench_batches],
        'logits_kept_per_step_mean': statistics.mean(b['logits_kept'] for b in batches),
        # what the trainer itself logged (engine/throughput.py), for comparison with the benchmark's own figures
        'trainer_logged': {k: v for k, v in log[-1].items() if k in (
            'real_tokens_per_s', 'padded_tokens_per_s', 'padding_fraction', 'mfu_real', 'mfu_padded',
            'matmul_peak_gflops')},
        'trainer_logged_last_step': {k: log[-2].get(k) for k in ('real_tokens_per_s', 'mfu_real')} if len(log) > 1
        else {},
    }
    res['other_s_mean'] = res['step_time_mean_s'] - res['fwd_bwd_s_mean']  # data loading + rendering + optimizer + log
    res['_batches'] = batches
    del trainer
    return res


# -- report ------------------------------------------------------------------------------------------
ROWS = [('matmul peak before / after (GFLOP/s)',
         lambda r: f"{r['matmul_peak_gflops']:.1f} / {r['matmul_peak_after_gflops']:.1f}"),
        ('step time mean (s)', lambda r: f"{r['step_time_mean_s']:.3f}"),
        ('real tokens/s', lambda r: f"{r['real_tokens_per_s']:.1f}"),
        ('padded tokens/s', lambda r: f"{r['padded_tokens_per_s']:.1f}"),
        ('supervised tokens/s', lambda r: f"{r['supervised_tokens_per_s']:.1f}"),
        ('samples/s', lambda r: f"{r['samples_per_s']:.3f}"),
        ('MFU real', lambda r: f"{100 * r['mfu_real']:.1f} %"),
        ('MFU padded', lambda r: f"{100 * r['mfu_padded']:.1f} %"),
        ('padding fraction', lambda r: f"{100 * r['padding_fraction']:.1f} %"),
        ('fwd+bwd / other per step (s)',
         lambda r: f"{r['fwd_bwd_s_mean']:.3f} / {r['step_time_mean_s'] - r['fwd_bwd_s_mean']:.3f}"),
        ('peak RSS (GiB)', lambda r: f"{r['peak_rss_gib']:.2f}"),
        ('cpu_share', lambda r: f"{r['cpu_share']:.2f}"),
        ('tokens real / padded / supervised',
         lambda r: f"{r['real_tokens']} / {r['padded_tokens']} / {r['supervised_tokens']}"),
        ('loss first -> last', lambda r: f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}")]


def median_runs(runs: list[dict]) -> dict:
    ok = [r for r in runs if 'error' not in r]
    if not ok:
        return {}
    out = dict(ok[0])
    for k, v in ok[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in ok)
    return out


def table(summary: dict) -> str:
    names = list(summary)
    width = max(len(label) for label, _ in ROWS)
    lines = ['| ' + 'metric'.ljust(width) + ' | ' + ' | '.join(names) + ' |',
             '| ' + '-' * width + ' | ' + ' | '.join('-' * len(n) for n in names) + ' |']
    for label, fmt in ROWS:
        cells = []
        for n in names:
            try:
                cells.append(fmt(summary[n]).rjust(len(n)))
            except (KeyError, IndexError, TypeError):
                cells.append('-'.rjust(len(n)))
        lines.append('| ' + label.ljust(width) + ' | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--systems', default=','.join(ALL_SYSTEMS), help=f'comma separated, of {ALL_SYSTEMS}')
    ap.add_argument('--repeats', type=int, default=1)
    ap.add_argument('--steps', type=int, default=20, help='measured steps')
    ap.add_argument('--warmup', type=int, default=3, help='unmeasured warm-up steps')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    ap.add_argument('--anchor', default=str(DEFAULT_ANCHOR), help='folder of bench_trl.py and data/')
    ap.add_argument('--out', default=None, help='write every figure as JSON here')
    ap.add_argument('--keep-model', default=None, help='save bench-small here (default: a temp dir)')
    args = ap.parse_args()
    systems = [s.strip() for s in args.systems.split(',') if s.strip()]
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        ap.error(f'unknown systems {sorted(unknown)}; choose from {ALL_SYSTEMS}')
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import logging

    import transformers
    transformers.logging.set_verbosity_error()
    logging.getLogger('mllm').setLevel(logging.WARNING)

    anchor_dir = Path(args.anchor).resolve()
    anchor = load_anchor(anchor_dir)
    anchor.WARMUP_STEPS, anchor.MEASURED_STEPS = args.warmup, args.steps  # read by anchor.run_once
    data_dir = anchor_dir / 'data'
    anchor.ensure_data(str(data_dir))
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix='mllm_vs_trl_') as tmp:
        model_dir = args.keep_model or os.path.join(tmp, 'bench_small')
        tok, probe = save_bench_small(anchor, data_dir, model_dir)
        pc, cfg = anchor.param_counts(probe), probe.config
        trl_systems = [s for s in systems if s in TRL_CONFIG]
        if trl_systems:
            _, proc, ds, _, key_to_id = anchor.load_everything(str(data_dir))
            vis_run = anchor.vision_layers_run(probe, proc, ds)
        else:
            vis_run = cfg.vision_config.num_hidden_layers  # transformers' LLaVA runs the whole tower
        del probe
        runs = {s: [] for s in systems}
        for r in range(args.repeats):
            for system in systems:
                peak = anchor.matmul_peak()
                print(f'[bench] {system} repeat {r + 1}/{args.repeats}: matmul peak '
                      f'{peak["gflops_median"]:.1f} GFLOP/s, load {anchor.loadavg()}', flush=True)
                out_dir = os.path.join(tmp, f'{system}_{r}')
                if system in TRL_CONFIG:
                    res = anchor.run_once(TRL_CONFIG[system], tok, proc, ds, key_to_id, out_dir)
                else:
                    res = run_mllm(system, anchor, model_dir, data_dir, out_dir, args.warmup, args.steps)
                res['matmul_peak_gflops'] = peak['gflops_median']
                res['matmul_peak_after_gflops'] = anchor.matmul_peak()['gflops_median']
                res['loadavg_after'] = anchor.loadavg()
                anchor.add_flops(res, pc, cfg, vis_run, peak['gflops_median'])
                res.pop('batch_sample_ids', None)
                print(f'[bench]   step {res["step_time_mean_s"]:.3f}s real {res["real_tokens_per_s"]:.0f} tok/s '
                      f'MFU real {100 * res["mfu_real"]:.1f}% padding {100 * res["padding_fraction"]:.1f}% '
                      f'cpu share {res["cpu_share"]:.2f}', flush=True)
                runs[system].append(res)
    summary = {s: median_runs(v) for s, v in runs.items()}
    print()
    print(table(summary))

    def get(system, key):
        return summary.get(system, {}).get(key)

    line = {'threads': torch.get_num_threads(), 'steps': args.steps, 'warmup': args.warmup, 'repeats': args.repeats,
            'total_wall_s': round(time.time() - t_start, 1)}
    for s in systems:
        for key in ('real_tokens_per_s', 'padded_tokens_per_s', 'supervised_tokens_per_s', 'samples_per_s',
                    'step_time_mean_s', 'mfu_real', 'mfu_padded', 'padding_fraction', 'peak_rss_gib', 'cpu_share',
                    'matmul_peak_gflops'):
            line[f'{s}_{key}'] = get(s, key)
    for s in (s for s in systems if s.startswith('mllm')):
        for t in (t for t in systems if t.startswith('trl')):
            for key in ('real_tokens_per_s', 'mfu_real'):
                if get(s, key) and get(t, key):
                    line[f'ratio_{s}_over_{t}_{key}'] = get(s, key) / get(t, key)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'summary_line': line, 'runs': runs}, f, indent=1, default=str)
    print(json.dumps(line))
    return line


if __name__ == '__main__':
    with contextlib.suppress(BrokenPipeError):
        main()
