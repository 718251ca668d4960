"""One rank of the FSDP2 (`torch.distributed.fsdp.fully_shard`) check on CPU / gloo; run by tests/test_fsdp2_cpu.py as

    python -m torch.distributed.run --nproc_per_node 2 --master_port PORT tests/fsdp2_worker.py OUT_DIR [FAMILY ...]

For every model family (the tiny random-weight models of config/_base_/model/tiny_models.py) each rank builds
identical copies (same init seed): one is sharded with FSDP2 over the 2 ranks, the others stay plain 1-process
references that every rank runs itself on all 4 samples. Each rank writes what it measured to OUT_DIR/rank{r}.json
({'world_size', 'rank', 'families': {family: result}}, rewritten after each family, so a failure keeps the earlier
families' results); the test asserts on those numbers.

Per family:
1. wrapping: `fully_shard` on every module whose class is in `model._no_split_modules` (innermost first), then on
   the root. Every parameter must be a DTensor placed (Shard(0),) whose local shards add up to the full tensor.
2. training: 3 AdamW steps (fp32, lr 1e-3, weight_decay 0 -- with decay the Flamingo plan's masked embedding rows
   would shrink, see mllm/models/flamingo/freezing.py) on a global batch of 4 rendered samples; rank r takes
   samples [2r, 2r + 1]. Loss averaging: the loss of a step is the mean per-token loss of the GLOBAL batch. Each
   rank's `model(..., num_items_in_batch=N)` returns (sum of its per-token losses) / N, N = the all-reduced number
   of trained label positions (labels[:, 1:] != -100, i.e. after the causal shift); the step's loss is the
   all-reduced sum of those. FSDP2's reduce-scatter averages gradients over the ranks, so each rank backpropagates
   world_size * its loss and the reduced gradient is the gradient of the global mean (gradient divide factor 1
   would need PREMUL_SUM, which gloo lacks). Two 1-process references:
     `whole`: one batch of all 4 samples (padded together): losses and step-1 gradients are compared with it.
     `accum`: the same 4 samples as the ranks' two micro-batches, gradients accumulated: the final parameters are
        compared with it. Against `whole` they differ by up to ~2e-5 after 3 steps without any sharding error:
        Adam divides by sqrt(v) + eps (eps = 1e-8), which turns the ~1e-10 rounding difference of a gradient
        element near 0 (other padding, other summation order) into up to lr * 1e-2.
3. generation: greedy `generate(max_new_tokens=8, synced_gpus=True)` on the module `MllmTrainer._generating_module()`
   picks, each rank on its own 2 prompts (left-padded, different lengths); rank 0 is given eos ids that its prompts
   reach at the 1st or 2nd new token, so it finishes early while rank 1 runs all 8 steps. Compared token for token
   with the unsharded `whole` reference holding the gathered trained weights.
Flamingo families also rerun training with their embedding-row gradient mask applied to the sharded gradient
(`masked` sub-result; see `mask_sharded_embedding_grad`).

`--no-sync-experiment` instead runs the early-finishing generation WITHOUT synced_gpus, then a barrier, and prints
what happens (the test does not run this; see the note in tests/test_fsdp2_cpu.py).
Set FSDP2_WORKER_DUMP_AFTER=<seconds> to have every rank print its Python stack and exit after that long (a hang).
"""
import argparse
import copy
import json
import os
import sys
import time
import traceback
from types import SimpleNamespace

import torch
import torch.distributed as dist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmengine.config import Config, ConfigDict  # noqa: E402
from PIL import Image  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method  # noqa: E402
from torch.distributed.tensor import DTensor, Shard  # noqa: E402
from transformers.integrations.fsdp import is_fsdp_managed_module  # noqa: E402

from mllm.dataset.root import IGNORE_INDEX  # noqa: E402
from mllm.engine.trainer import MllmTrainer  # noqa: E402
from mllm.models import build_model  # noqa: E402
from mllm.models.flamingo.builder import SPECIAL_TOKENS as FLAMINGO_NEW_TOKENS  # noqa: E402
from mllm.models.flamingo.freezing import mask_frozen_embedding_rows  # noqa: E402
from tests.helpers import ItemList  # noqa: E402
from tests.test_conv_dataset import rec_item  # noqa: E402
from tests.test_flamingo_render import episode  # noqa: E402

TINY = Config.fromfile(os.path.join(REPO, 'config', '_base_', 'model', 'tiny_models.py'))
FAMILIES = {'llava': 'LLAVA_TINY_MODEL', 'lcl': 'LCL_TINY_MODEL', 'openflamingo': 'OPENFLAMINGO_TINY_MODEL',
            'otter': 'OTTER_TINY_MODEL'}
FLAMINGO = ('openflamingo', 'otter')
STEPS, LR, MAX_NEW_TOKENS = 3, 1e-3, 8
RTOL, ATOL = 1e-5, 1e-6
COLOURS = [(200, 30, 30), (30, 160, 40), (20, 40, 220), (180, 180, 20), (120, 20, 160), (10, 170, 170),
           (240, 120, 10), (90, 90, 90)]
QUESTIONS = ['Where is the red circle?', 'Find the object.', 'Locate the small thing in the picture, please.',
             'Where?', 'Which region shows the shape?', 'Point out the object for me.',
             'What box holds the object in this rather plain picture?', 'Box?']


# --- data: the tests' own canonical items (REC items, Otter episodes), varied in image, question, answer --------
def llava_items(start, count):
    items = []
    for k in range(start, start + count):
        item = rec_item(size=(96 - 8 * (k % 3), 64 + 8 * (k % 4)), box=(10 + k, 5, 50, 40 + k),
                        question=f'<image> {QUESTIONS[k]}', source=None)
        item['image'] = Image.new('RGB', item['image'].size, COLOURS[k])
        items.append(item)
    return items


def flamingo_items(start, count):
    items = []
    for k in range(start, start + count):
        item = episode()
        item['image'] = [Image.new('RGB', (40, 30), COLOURS[k]), Image.new('RGB', (30 + 4 * k, 40), COLOURS[-1 - k])]
        item['conversations'][2]['value'] = f'<image>{QUESTIONS[k]}'
        item['conversations'][3]['value'] = ' '.join(['a card'] * (1 + k % 3)) + f' number {k}'
        items.append(item)
    return items


def render(name, family, conv_args, mode, start, count):
    items = (flamingo_items if name in FLAMINGO else llava_items)(start, count)
    return list(family.render(ItemList(items), mode, name=f'fsdp2_{mode}', **conv_args))


def model_inputs(batch):
    return {k: v for k, v in batch.items() if k not in ('labels', 'sample_index', 'skipped')}


# --- helpers --------------------------------------------------------------------------------------------------
def all_sum(value, dtype=torch.float64):
    t = torch.as_tensor(value, dtype=dtype).clone()
    dist.all_reduce(t)
    return t


def full(t):
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach()


def compare(actual: dict, expected: dict) -> dict:
    """max |a - e| and max(|a - e| - (atol + rtol |e|)) (<= 0 iff assert_close(rtol=RTOL, atol=ATOL) passes)."""
    diff, worst, excess = 0.0, None, -float('inf')
    for n, a in actual.items():
        a, e = a.double(), expected[n].double()
        d = float((a - e).abs().max()) if a.numel() else 0.0
        x = float(((a - e).abs() - (ATOL + RTOL * e.abs())).max()) if a.numel() else -ATOL
        if d > diff:
            diff, worst = d, n
        excess = max(excess, x)
    return {'max_abs_diff': diff, 'excess': excess, 'worst': worst}


def build(cfg, copies):
    built = [build_model(ConfigDict(copy.deepcopy(cfg))) for _ in range(copies)]
    return [m for m, _ in built], built[0][1]


def shard(model, mesh):
    no_split = set(model._no_split_modules or ())
    targets = [m for m in model.modules() if type(m).__name__ in no_split]
    for module in reversed(targets):  # innermost first: fully_shard must see children before their parents
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return targets


def expected_wrapped(model):
    """What `_no_split_modules` names in these models: every decoder layer and CLIP encoder layer (Flamingo's
    gated cross-attention blocks live inside their decoder layers), plus the CLIP embeddings module."""
    text, vision = model.config.get_text_config(), model.config.vision_config
    return text.num_hidden_layers + vision.num_hidden_layers + 1


def sharding_facts(model, full_shapes):
    placements_ok, shapes_ok, local_numels = True, True, []
    for name, param in model.named_parameters():
        placements_ok &= isinstance(param, DTensor) and tuple(param.placements) == (Shard(0),)
        shapes_ok &= tuple(param.shape) == full_shapes[name]
        local_numels.append((param.to_local() if isinstance(param, DTensor) else param).numel())
    summed = all_sum(local_numels, torch.long)
    numels = torch.tensor([torch.Size(s).numel() for s in full_shapes.values()])
    local, total = sum(local_numels), int(numels.sum())
    return {'all_dtensor_shard0': placements_ok, 'local_numel': local, 'full_numel': total,
            'local_fraction': local / total, 'shards_add_up': shapes_ok and bool((summed == numels).all())}


def flamingo_row_mask(model, tokenizer):
    """The 0/1 row mask of the Flamingo plan (mllm/models/flamingo/freezing.py): only the new tokens' rows train."""
    weight = model.get_input_embeddings().weight
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype)
    mask[[tokenizer.convert_tokens_to_ids(t) for t in FLAMINGO_NEW_TOKENS]] = 1
    return mask


def train(model, batches, num_items, world):
    """STEPS AdamW steps; each step runs every batch of `batches` (gradient accumulation) and returns
    (per-step losses, step-1 gradients gathered to full tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    # as MllmTrainer.create_optimizer does: the Flamingo plan's frozen embedding rows masked before every step
    optimizer.register_step_pre_hook(lambda *_: mask_frozen_embedding_rows(model))
    losses, first_grads = [], {}

    def record(*_):  # after the mask hook (hooks run in order): the gradients the step applies
        if not first_grads:
            first_grads.update({n: full(p.grad) for n, p in model.named_parameters() if p.grad is not None})
    optimizer.register_step_pre_hook(record)
    for _ in range(STEPS):
        loss = 0.0
        for batch in batches:
            micro = model(**model_inputs(batch), labels=batch['labels'], num_items_in_batch=num_items).loss
            (micro * world).backward()
            loss = loss + micro.detach().double()
        losses.append(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses, first_grads


def greedy(module, batch, eos, pad, **kwargs):
    out = module.generate(**model_inputs(batch), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                          eos_token_id=eos, pad_token_id=pad, **kwargs)
    return out[:, batch['input_ids'].shape[1]:]


def eos_for_rank(free_tokens, rank, vocab_size):
    """Rank 0: the ids its prompts generate as 2nd new token (it stops after <= 2 tokens);
    rank 1: an id none of its prompts generates in 8 steps (it runs all 8)."""
    if rank == 0:
        return sorted({int(t) for t in free_tokens[:, 1]})
    used = {int(t) for t in free_tokens.flatten()}
    return [next(i for i in range(vocab_size - 1, -1, -1) if i not in used)]


# --- the checks -----------------------------------------------------------------------------------------------
class Setup(SimpleNamespace):
    """One family's sharded model, references, batches and the facts measured while building them."""


def set_up(name, mesh, rank, world, references=('whole', 'accum')):
    cfg = TINY[FAMILIES[name]].to_dict()
    models, family = build(cfg, 1 + len(references))
    model, refs = models[0], dict(zip(references, models[1:]))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    same_init = all(torch.equal(p, init[n]) for r in refs.values() for n, p in r.named_parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    full_shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    conv_args = dict(cfg.get('conv_args') or {})
    collate = family.collator('train')
    samples = render(name, family, conv_args, 'train', 0, 2 * world)
    halves = [collate(samples[2 * r:2 * r + 2]) for r in range(world)]
    whole = collate(samples)
    local_items = int((halves[rank]['labels'][:, 1:] != IGNORE_INDEX).sum())
    num_items = int(all_sum(local_items, torch.long))
    wrapped = shard(model, mesh)
    facts = {
        'same_init': same_init, 'num_trainable': len(trainable), 'num_frozen': len(init) - len(trainable),
        'requires_grad_kept': {n for n, p in model.named_parameters() if p.requires_grad} == trainable,
        'num_items': num_items, 'whole_items': int((whole['labels'][:, 1:] != IGNORE_INDEX).sum()),
        'local_shape': list(halves[rank]['input_ids'].shape), 'whole_shape': list(whole['input_ids'].shape),
    }
    return Setup(name=name, cfg=cfg, conv_args=conv_args, family=family, model=model, refs=refs, init=init,
                 trainable=trainable, full_shapes=full_shapes, halves=halves, local=halves[rank], whole=whole,
                 num_items=num_items, wrapped=wrapped, facts=facts)


def check_training(s, world, mesh, result):
    t0 = time.perf_counter()
    for m in (s.model, *s.refs.values()):
        m.train()
    losses, grads = train(s.model, [s.local], s.num_items, world)
    losses = [float(all_sum(loss)) for loss in losses]
    frozen_with_grad = [n for n, p in s.model.named_parameters() if not p.requires_grad and p.grad is not None]
    result['seconds_train_sharded'] = time.perf_counter() - t0
    whole_losses, whole_grads = train(s.refs['whole'], [s.whole], s.facts['whole_items'], 1)
    accum_losses, _ = train(s.refs['accum'], s.halves, s.num_items, 1)
    params = {n: full(p) for n, p in s.model.named_parameters()}
    ref_params = {k: {n: p.detach() for n, p in r.named_parameters()} for k, r in s.refs.items()}
    frozen = [n for n in s.init if n not in s.trainable]
    result.update({
        'losses_sharded': losses, 'losses_whole': [float(x) for x in whole_losses],
        'losses_accum': [float(x) for x in accum_losses],
        'grads_vs_whole': compare(grads, whole_grads),
        'same_grad_names': sorted(grads) == sorted(whole_grads) == sorted(s.trainable),
        'params_vs_accum': compare(params, ref_params['accum']),
        'params_vs_whole': compare(params, ref_params['whole']),
        'trainable_moved_by': max(float((params[n] - s.init[n]).abs().max()) for n in s.trainable),
        'frozen_changed': [n for n in frozen if not torch.equal(params[n], s.init[n])
                           or any(not torch.equal(r[n], s.init[n]) for r in ref_params.values())],
        'frozen_with_grad': frozen_with_grad,
    })
    if s.name in FLAMINGO:  # only the new tokens' rows of the embedding may move
        whole = s.refs['whole']
        key = next(n for n, p in whole.named_parameters() if p is whole.get_input_embeddings().weight)
        allowed = flamingo_row_mask(s.model, s.family.tokenizer).squeeze(1).bool()
        moved = {'sharded': (params[key] - s.init[key]).abs().amax(dim=1) > 0,
                 'whole': (ref_params['whole'][key] - s.init[key]).abs().amax(dim=1) > 0}
        result['embedding_rows_moved'] = {
            **{k: int(v.sum()) for k, v in moved.items()},
            **{f'outside_mask_{k}': int((v & ~allowed).sum()) for k, v in moved.items()}}
    return params


def check_generation(s, rank, params, result):
    t0 = time.perf_counter()
    model, ref = s.model, s.refs['whole']
    model.eval()
    ref.eval()
    pad = s.family.tokenizer.pad_token_id
    batch = s.family.collator('eval')(render(s.name, s.family, s.conv_args, 'eval', 4 + 2 * rank, 2))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(params[n])
        free = greedy(ref, batch, eos=[], pad=pad, min_new_tokens=MAX_NEW_TOKENS)
        eos = eos_for_rank(free, rank, ref.get_input_embeddings().weight.shape[0])
        expected = greedy(ref, batch, eos=eos, pad=pad)
        # transformers' generate runs the image encoder (LLaVA: `get_image_features`; Flamingo's `generate`:
        # `get_media_features`) outside the root's forward, where FSDP2 has not gathered the root's own
        # parameters: without registering `generate` as an FSDP forward method it fails. transformers' Trainer
        # registers it in `train()` only (trainer.py: register_fsdp_forward_method(self.model, "generate")).
        try:
            greedy(model, batch, eos=eos, pad=pad, synced_gpus=True)
            result['unregistered_generate'] = 'ok'
        except RuntimeError as exc:
            result['unregistered_generate'] = f'{type(exc).__name__}: {str(exc)[:160]}'
        module, context, synced = MllmTrainer._generating_module(SimpleNamespace(model=model, accelerator=None))
        result['generate_registered_by_trainer'] = bool(getattr(model, '_mllm_generate_registered', False))
        with context:
            got = greedy(module, batch, eos=eos, pad=pad, synced_gpus=synced)
    result.update({
        'generating_module_is_sharded_model': module is model, 'generating_synced_gpus': bool(synced),
        'eos': eos, 'prompt_lengths': batch['attention_mask'].sum(1).tolist(), 'free_run': free.tolist(),
        'generated': got.tolist(), 'expected': expected.tolist(), 'new_tokens': int(got.shape[1]),
        'generation_equal': bool(got.shape == expected.shape and torch.equal(got, expected)),
        'seconds_generate': time.perf_counter() - t0,
    })


def check_predict_and_score(s, out_dir, result):
    """MllmTrainer.predict_and_score on the FSDP2-sharded model under torchrun (MULTI_CPU, gloo): each rank
    generates its shard of 5 eval samples (one padding duplicate), rank 0 writes the JSONL. The reference is the
    unsharded copy with the same weights (check_generation copied them), generating every sample alone."""
    from transformers import Seq2SeqTrainingArguments

    s.model.eval()
    samples = render(s.name, s.family, s.conv_args, 'eval', 0, 5)
    args = Seq2SeqTrainingArguments(output_dir=os.path.join(out_dir, s.name), use_cpu=True, report_to='none',
                                    per_device_eval_batch_size=2, remove_unused_columns=False)
    trainer = MllmTrainer(model=s.model, args=args, processing_class=s.family.tokenizer,
                          data_collator=s.family.collator('train'), eval_collator=s.family.collator('eval'),
                          gen_kwargs=dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False))
    trainer.predict_and_score(samples, compute_metric=None, prefix='fsdp2')
    reference, collate = s.refs['whole'], s.family.collator('eval')
    expected = []
    with torch.no_grad():
        for sample in samples:
            batch = collate([sample])
            out = reference.generate(**model_inputs(batch), generation_config=trainer.generation_config)
            expected.append(trainer._decode(out[:, batch['input_ids'].shape[1]:].numpy())[0])
    result['predict_world_size'] = trainer.args.world_size
    result['predict_expected'] = expected
    path = os.path.join(out_dir, s.name, 'fsdp2_extra_prediction.jsonl')
    if trainer.is_world_process_zero():
        with open(path) as f:
            result['predict_lines'] = [json.loads(line) for line in f]


def run_family(name, mesh, rank, world, result, out_dir):
    """Fills `result` as it goes (a failure keeps what was measured before it)."""
    s = set_up(name, mesh, rank, world)
    counts = {}
    for m in s.wrapped:
        counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    result.update({
        'no_split_modules': sorted(s.model._no_split_modules), 'wrapped': len(s.wrapped), 'wrapped_by_class': counts,
        'expected_wrapped': expected_wrapped(s.model),
        'all_wrapped_are_fsdp': all(isinstance(m, FSDPModule) for m in s.wrapped) and isinstance(s.model, FSDPModule),
        'is_fsdp_managed_module': bool(is_fsdp_managed_module(s.model)),
        **s.facts, **sharding_facts(s.model, s.full_shapes),
    })
    params = check_training(s, world, mesh, result)
    check_generation(s, rank, params, result)
    check_predict_and_score(s, out_dir, result)


def no_sync_experiment(name, mesh, rank, world, result, out_dir=None):
    """Rank 0 finishes after <= 2 new tokens, rank 1 needs 8: generate WITHOUT synced_gpus, then a barrier."""
    s = set_up(name, mesh, rank, world, references=('whole',))
    s.model.eval()
    s.refs['whole'].eval()
    register_fsdp_forward_method(s.model, 'generate')
    pad = s.family.tokenizer.pad_token_id
    batch = s.family.collator('eval')(render(name, s.family, s.conv_args, 'eval', 4 + 2 * rank, 2))
    with torch.no_grad():
        free = greedy(s.refs['whole'], batch, eos=[], pad=pad, min_new_tokens=MAX_NEW_TOKENS)
        eos = eos_for_rank(free, rank, s.refs['whole'].get_input_embeddings().weight.shape[0])
        t0 = time.perf_counter()
        print(f'[rank {rank}] {name}: generate without synced_gpus, eos={eos}', flush=True)
        got = greedy(s.model, batch, eos=eos, pad=pad, synced_gpus=False)
        print(f'[rank {rank}] {name}: generate returned {got.shape[1]} new tokens after '
              f'{time.perf_counter() - t0:.1f}s: {got.tolist()} (unsharded: {free.tolist()})', flush=True)
        dist.barrier()
        print(f'[rank {rank}] {name}: barrier passed', flush=True)
    result.update({'no_sync_returned': True, 'new_tokens': int(got.shape[1]), 'generated': got.tolist()})


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('out_dir')
    parser.add_argument('families', nargs='*', default=list(FAMILIES))
    parser.add_argument('--no-sync-experiment', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if os.environ.get('FSDP2_WORKER_DUMP_AFTER'):
        import faulthandler
        faulthandler.dump_traceback_later(float(os.environ['FSDP2_WORKER_DUMP_AFTER']), exit=True)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, f'this check needs exactly 2 ranks, got world size {world}'
    mesh = init_device_mesh('cpu', (world,))
    path = os.path.join(args.out_dir, f'rank{rank}.json')
    results = {'world_size': world, 'rank': rank, 'families': {}}
    check = no_sync_experiment if args.no_sync_experiment else run_family
    for name in args.families:
        t0 = time.perf_counter()
        result = results['families'][name] = {}
        try:
            check(name, mesh, rank, world, result, args.out_dir)
        except Exception:  # written to the result file: the test fails on it, showing the traceback
            result['error'] = traceback.format_exc()
        result['seconds'] = time.perf_counter() - t0
        with open(path + '.tmp', 'w') as f:
            json.dump(results, f, indent=1)
        os.replace(path + '.tmp', path)
        if 'error' in result:
            break  # the ranks' collectives may be out of step now: stop rather than hang in the next family
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
