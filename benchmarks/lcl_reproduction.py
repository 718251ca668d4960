"""The LCL paper's central claim at CPU scale: link-context training lets a model name concepts it never saw.

    python benchmarks/lcl_reproduction.py [--out exp/lcl_reproduction] [--runs vanilla,openflamingo,lcl]

Three tiny models train through finetune.py (one subprocess each, configs in config/lcl_cpu/) on the synthetic
ISEKAI data (mllm/demo/isekai_synth.py: made-up concepts drawn as shape x pattern x colour, SEEN ones for training,
UNSEEN ones for evaluation only):
  vanilla       the LCL row's tiny LLaVA trained on single images of the seen concepts;
  openflamingo  a tiny OpenFlamingo trained on 2-way-random episodes of the seen concepts, in its own format;
  lcl           the tiny LLaVA in Shikra's image layout trained on the same episodes (the paper's LCL 2-way-random).
Each is evaluated (multitest, LCLComputeMetrics) on 2-way ISEKAI episodes of the unseen concepts at 2 / 4 / 8
shots per concept, 128 queries each; chance (naming one of the two support concepts at random) is 0.5. The
validation set (4 shots) is scored every eval_steps: the accuracy-vs-time curve.

Two choices differ from the paper, because these models start from random weights where the paper's start from
a pretrained Vicuna that can already copy a word from its context:
  - support answers carry loss too (conv_args.in_context_loss=True): every support example after a concept's
    first is a link-context example of its own, many more per step;
  - every concept of a training episode is shown under a fresh made-up name (LCLEpisodeDataset rename_prob=1.0):
    with the 160 seen names kept, a tiny model learns to recognise the seen concepts and recite their names,
    which answers every training query without reading the context (measured: unseen accuracy 0.00-0.02 and
    seen-looking names in the predictions after 600-900 steps without renaming).
Three more choices size the task to what such a model learns within the budget (measured 2026-12-01, 2 cores):
  - names of 3 letters (generate_isekai_synth and LCLEpisodeDataset name_letters=(3, 3)): the demo tokenizer
    spells a made-up name letter by letter, and a random-init 2-layer LM of this width learns to copy a
    2-3-letter name from its context in ~1000 steps but a 4-8-letter one not in 2500 (text-only probe; with
    4-8 letters every row of the table was 0.00);
  - short phrases ('What is this?' / 'And what is this?' / '"<name>".', isekai_synth.py __PHRASES) and 4 image
    tokens per image (32 px patches): an 8-shot episode is ~380 tokens instead of ~1000, so ~0.27 s a step
    instead of ~0.75, 3600 steps in the budget instead of 1350.
Everything else (episode policy, data, evaluation) is the paper's protocol at small scale.
`feature_match` adds a reference line that is not a model: each query named by its nearest support image, by
cosine similarity of the frozen tower's mean-pooled features. It shows how much of the answer those features
hold; a link-context model has to learn that comparison inside its LM.

Writes under --out: <run>/ (finetune.py's output: results JSON, predictions JSONL, trainer_state.json),
table.md (the paper's Table 1 layout, the copying table and the curve as text), curve.png (validation accuracy
against training time), results.json; prints the table and a final JSON line. Same config and seeds -> same
numbers (times vary with the machine). `--report-only` rebuilds them from the run folders already under --out. A
second table measures progress towards copying that the accuracy cannot show (see copy_diagnostics).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = (2, 4, 8)
RUNS = {  # run name -> (config, the row's label in the table)
    'vanilla': ('config/lcl_cpu/vanilla_synth.py', 'Vanilla tiny LLaVA (single images)'),
    'openflamingo': ('config/lcl_cpu/openflamingo_synth.py', 'Tiny OpenFlamingo (episodes)'),
    'lcl': ('config/lcl_cpu/lcl_synth_2way_random.py', 'Tiny LCL 2-way-random'),
}
TIME_LIMIT_S = 20 * 60  # the budget per model on 2 cores


def run_one(name: str, out: Path, extra: list[str]) -> dict:
    """Train + evaluate one row through finetune.py in a subprocess; return its figures."""
    config = RUNS[name][0]
    run_dir = out / name
    log = out / f'{name}.log'
    cmd = [sys.executable, str(REPO / 'mllm/pipeline/finetune.py'), str(REPO / config), '--output_dir', str(run_dir),
           *extra]
    env = dict(os.environ, HF_HUB_OFFLINE='1', TOKENIZERS_PARALLELISM='false')
    start = time.perf_counter()
    with open(log, 'w') as f:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode:
        tail = log.read_text(errors='replace').splitlines()[-15:]
        raise SystemExit(f"{name}: finetune.py failed (exit {done.returncode}); last lines of {log}:\n"
                         + '\n'.join(tail))
    return dict(collect(name, out), wall_s=round(wall, 1))


def copy_diagnostics(rows: list[dict]) -> dict:
    """How far a model got towards copying a name from its context, from the per-sample predictions: the share of
    answers spelt only with letters of the two support names, of answers that are exactly one of the two names
    (copied whole, right or wrong: accuracy / this share is how often a whole copy picks the right concept), and
    of answers whose first letter is the positive's / the negative's first letter (a model that copies but cannot
    tell the concepts apart scores those two equally)."""
    n = len(rows) or 1
    answers = [(r['answer'] or '', r['positive'], r['negatives'][0]) for r in rows]
    return {'support_letters_only': sum(bool(a) and set(a) <= set(p + q) for a, p, q in answers) / n,
            'either_name': sum(a in (p, q) for a, p, q in answers) / n,
            'first_letter_positive': sum(bool(a) and a[0] == p[0] for a, p, _ in answers) / n,
            'first_letter_negative': sum(bool(a) and a[0] == q[0] for a, _, q in answers) / n}


def feature_match(run_dir: Path, shots=SHOTS) -> dict:
    """Accuracy per shot count of naming each unseen query by its nearest support image, by cosine similarity of
    the mean-pooled features of the LCL row's frozen vision tower (the layer the projector reads), on the same
    ISEKAI episodes. No training: it measures whether those features hold what the answer needs."""
    import torch
    from mmengine.config import Config

    from mllm.dataset.builder import build_raw_dataset
    from mllm.dataset.utils.io import read_image
    from mllm.models import build_model

    cfg = Config.fromfile(str(REPO / RUNS['lcl'][0]))
    model, family = build_model(dict(cfg.model_args, model_name_or_path=str(run_dir)))
    tower = model.model.vision_tower.eval()
    layer = cfg.model_args.vision_feature_layer
    cache: dict = {}

    def pooled(path: str) -> torch.Tensor:
        if path not in cache:
            pixels = family.image_processor(images=read_image(path), return_tensors='pt')['pixel_values']
            with torch.no_grad():
                states = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[layer]
            cache[path] = states[0, 1:].mean(0)  # the patches, without the class token
        return cache[path]

    scores = {}
    for k in shots:
        where = f'data_args.multitest.unseen_{k}shot.cfg'
        entry = {key: v for key, v in cfg.data_args.multitest[f'unseen_{k}shot'].cfg.items() if key != 'name'}
        dataset = build_raw_dataset(entry, cfg.data_args.get('roots') or {}, where)
        right = 0
        for i in range(len(dataset)):
            episode = dataset.episode(i)  # the plan: (image path, shown name) per support example, the query
            supports = torch.stack([pooled(path) for path, _ in episode.support])
            best = int(torch.nn.functional.cosine_similarity(supports, pooled(episode.query)[None]).argmax())
            right += episode.support[best][1] == episode.answer
        scores[f'{k}shot'] = right / len(dataset)
    return scores


def collect(name: str, out: Path) -> dict:
    """The figures of a finished run, read from what finetune.py wrote under out/name."""
    config, label = RUNS[name]
    run_dir = out / name
    row = {'run': name, 'label': label, 'config': config}
    for k in SHOTS:
        results = json.loads((run_dir / f'multitest_unseen_{k}shot_results.json').read_text())
        prefix = f'multitest_unseen_{k}shot'
        row[f'{k}shot'] = results[f'{prefix}_accuracy_{k}shot']
        row[f'{k}shot_total'] = results[f'{prefix}_total']
        row['chance_level'] = results[f'{prefix}_chance_level']
        predictions = [json.loads(line) for line in (run_dir / f'{prefix}_extra_prediction.jsonl').open()]
        row[f'{k}shot_copy'] = copy_diagnostics(predictions)
    train = json.loads((run_dir / 'train_results.json').read_text())
    row['train_s'] = round(train['train_runtime'], 1)
    state = json.loads((run_dir / 'trainer_state.json').read_text())
    row['steps'] = state['global_step']
    row['curve'] = [(e['elapsed_s'], e['step'], e['eval_accuracy']) for e in state['log_history']
                    if 'eval_accuracy' in e and 'elapsed_s' in e]
    row['within_time_limit'] = row['train_s'] <= TIME_LIMIT_S
    return row


def table(rows: list[dict], features: dict | None = None) -> str:
    """The paper's Table 1 layout: one row per method, accuracy per shot count."""
    lines = ['| Method | ' + ' | '.join(f'{k}-shot' for k in SHOTS) + ' | train time |',
             '|---|' + '---:|' * (len(SHOTS) + 1)]
    for r in rows:
        cells = ' | '.join(f"{r[f'{k}shot']:.2f}" for k in SHOTS)
        lines.append(f"| {r['label']} | {cells} | {r['train_s'] / 60:.1f} min |")
    chance = rows[0]['chance_level'] if rows else 0.5
    lines.append('| chance (one of the two support names at random) | ' + ' | '.join(f'{chance:.2f}' for _ in SHOTS)
                 + ' | |')
    if features:
        lines.append('| nearest support image by the frozen tower\'s features (no model, see feature_match) | '
                     + ' | '.join(f"{features[f'{k}shot']:.2f}" for k in SHOTS) + ' | |')
    lines += ['', 'Towards copying (all shot counts pooled): answers spelt only with letters of the two support names;'
              ' answers that are exactly one of the two names; first letter = the positive\'s / the negative\'s.', '',
              '| Method | support letters only | exactly a support name | first letter positive | '
              'first letter negative |',
              '|---|---:|---:|---:|---:|']
    for r in rows:
        pooled = {key: sum(r[f'{k}shot_copy'][key] for k in SHOTS) / len(SHOTS) for key in r[f'{SHOTS[0]}shot_copy']}
        lines.append(f"| {r['label']} | {pooled['support_letters_only']:.2f} | {pooled['either_name']:.2f} | "
                     f"{pooled['first_letter_positive']:.2f} | "
                     f"{pooled['first_letter_negative']:.2f} |")
    lines += ['', curve_table(rows)]
    return '\n'.join(lines)


def curve_table(rows: list[dict]) -> str:
    """The accuracy-vs-time curve as text (what curve.png draws): per row, the 4-shot validation accuracy on unseen
    concepts at each evaluation, with the training minutes and the step it was taken at."""
    lines = ['Accuracy-vs-time (validation: unseen concepts, 4 shots; minutes of training, step):', '',
             '| Method | accuracy (minutes, step) at each evaluation |', '|---|---|']
    for r in rows:
        points = ', '.join(f'{acc:.2f} ({t / 60:.1f}, {step})' for t, step, acc in r['curve'])
        lines.append(f"| {r['label']} | {points or 'no evaluation'} |")
    return '\n'.join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r['curve']:
            ax.plot([t / 60 for t, _, _ in r['curve']], [a for _, _, a in r['curve']], 'o-', label=r['label'])
    ax.axhline(0.5, color='grey', linestyle='--', linewidth=1, label='chance')
    ax.set_xlabel('training time (min, 2 CPU cores)')
    ax.set_ylabel('accuracy, unseen concepts, 4-shot')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='exp/lcl_reproduction')
    p.add_argument('--runs', default=','.join(RUNS), help=f'comma-separated subset of {list(RUNS)}')
    p.add_argument('--report-only', action='store_true', help='rebuild the table from the runs already under --out')
    p.add_argument('finetune_args', nargs='*', help='passed to every finetune.py run (after --), e.g. --max_steps 10')
    a = p.parse_args(argv)
    names = [n for n in a.runs.split(',') if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f'unknown run(s) {unknown}; known: {list(RUNS)}')
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        if a.report_only:
            rows.append(collect(name, out))
            continue
        print(f'[{time.strftime("%H:%M:%S")}] {name}: training {RUNS[name][0]} (log: {out / name}.log)', flush=True)
        rows.append(run_one(name, out, a.finetune_args))
        r = rows[-1]
        scores = ' '.join(f"{k}-shot {r[str(k) + 'shot']:.3f}" for k in SHOTS)
        print(f"  {scores}; {r['steps']} steps in {r['train_s']:.0f} s", flush=True)
    features = feature_match(out / 'lcl') if 'lcl' in names else None
    text = table(rows, features)
    (out / 'table.md').write_text(text + '\n')
    plot(rows, out / 'curve.png')
    summary = {r['run']: {k: r[k] for k in r if k != 'label'} for r in rows}
    if features:
        summary['feature_match'] = features
    if a.report_only and (out / 'results.json').is_file():  # keep the wall times measured by the training run
        for name, old in json.loads((out / 'results.json').read_text()).items():
            if name in summary and 'wall_s' in old:
                summary[name]['wall_s'] = old['wall_s']
    (out / 'results.json').write_text(json.dumps(summary, indent=1) + '\n')
    print(text)
    print(json.dumps({f"{r['run']}_{k}shot": r[f'{k}shot'] for r in rows for k in SHOTS}
                     | {f"{r['run']}_train_s": r['train_s'] for r in rows}))
    return summary


if __name__ == '__main__':
    main()
