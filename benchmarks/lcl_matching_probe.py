"""What limits the CPU reproduction of the LCL claim: how fast a tiny LM from random weights learns to pick, among
the names in its context, the one whose support example matches the query.

    python benchmarks/lcl_matching_probe.py [--keys features|oracle|tokens] [--layout chat|bare] [--steps N]
        [--batch-size B] [--lr LR] [--min-shot K] [--max-shot K] [--save LM.pt] [--init LM.pt] [--out R.json]

benchmarks/lcl_reproduction.py ends with models that copy one of the two support names but pick which at chance.
This probe takes the rest of the pipeline out of the way to ask whether that is the images' fault or the LM's.
It trains the LM of the CPU recipe (a Llama of 3 layers, width 128, 4 heads: config/_base_/model/lcl_cpu_tiny.py)
in a vocabulary of its own (the letters and a few format tokens, so a name is spelt letter by letter as the demo
tokenizer spells it) on the recipe's episode plans (LCLEpisodeDataset, 2-way-random over train_pairs.jsonl of the
synthetic ISEKAI data, fresh 3-letter names), at a few steps a second. What a support example is recognised by,
`--keys`:
  features  the frozen tower's patch features of the real image (the recipe's tower and feature layer), through a
            trainable linear projector: the recipe's task (`--pool`: their mean, one slot per image);
  oracle    a fixed random vector per concept plus noise of std 0.3 (features that separate perfectly);
  tokens    a discrete token per concept, drawn per episode from a pool of 40 (an exact match: associative recall;
            config/lcl_cpu/lm_warmup.py is this task in the recipe's own tokens and template);
  random    a random vector drawn afresh per concept IN EACH EPISODE plus noise of std --key-noise: no key is ever
            seen twice across episodes, so only a generic "which support looks like the query" match pays (a
            warm-up for the LM that no concept of the real data can leak into).
and where it stands, `--layout`:
  chat  USER <ims> key <ime> what is this ? ASSIST " n a m e " . </s>  (the recipe's order; the query asks
        "and what is this ?");
  bare  USER key n a m e . </s>  (the key right before the name, as in the usual associative-recall task).
Loss on every answer (support answers too, as conv_args.in_context_loss=True). Every --eval-every steps it prints
the training queries' first letter right (teacher forced, the last 100 queries) and, on 2-way episodes of the
UNSEEN concepts at --eval-shot shots (4; LCLTestEpisodeDataset over test_pairs.jsonl, greedy): accuracy,
whole-name copies, and how often the first letter is the positive's / the negative's (equal at chance on which
name).
`--save` writes the LM at every evaluation and `--init` starts from one: a warm start from a run on `tokens`
stands in for the pretrained LM the paper starts from (`--stop-at` ends such a run once it matches). `--out`
writes the curve as JSON. Seeded: the same arguments give the same numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import string
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset, LCLTestEpisodeDataset  # noqa: E402

DATA = REPO / 'data/isekai_synth'
RECIPE = REPO / 'config/lcl_cpu/lcl_synth_2way_random.py'
FORMAT = ('<pad>', 'USER', 'ASSIST', 'what', 'is', 'this', '?', 'and', '"', '.', '</s>', '<ims>', '<ime>', '<key>')
CONCEPT_TOKENS = 40
ORACLE_NOISE = 0.3


class Vocab:
    """Format tokens, the lower-case letters and CONCEPT_TOKENS concept tokens."""

    def __init__(self):
        words = [*FORMAT, *string.ascii_lowercase, *(f'<c{j}>' for j in range(CONCEPT_TOKENS))]
        self.id = {w: i for i, w in enumerate(words)}
        self.word = words

    def __len__(self):
        return len(self.word)


class KeyBank:
    """The vectors that stand in a support example's key slot, per image path (`features` / `oracle`)."""

    def __init__(self, keys: str, paths: list[str], seed: int, pool: bool = False):
        if keys == 'features':
            self.vectors = tower_features(paths)
            if pool:  # one key slot per image: the mean of its patches
                self.vectors = {p: v.mean(0, keepdim=True) for p, v in self.vectors.items()}
        else:
            classes = sorted({os.path.basename(os.path.dirname(p)) for p in paths})
            g = torch.Generator().manual_seed(seed)
            centre = {c: torch.randn(128, generator=g) for c in classes}
            self.vectors = {p: (centre[os.path.basename(os.path.dirname(p))]
                                + ORACLE_NOISE * torch.randn(128, generator=g))[None] for p in sorted(paths)}

    def __getitem__(self, path: str) -> torch.Tensor:
        return self.vectors[path]  # (slots, 128)


def tower_features(paths: list[str]) -> dict:
    """The recipe's frozen vision tower at its feature layer, patches without the class token, per path."""
    from mmengine.config import Config

    from mllm.dataset.utils.io import read_image
    from mllm.models import build_model

    cfg = Config.fromfile(str(RECIPE))
    torch.manual_seed(0)  # a frozen random tower of the recipe's shape: its weights are its initialisation
    model, family = build_model(cfg.model_args)
    tower = model.model.vision_tower.eval()
    out = {}
    for start in range(0, len(paths), 256):
        chunk = paths[start:start + 256]
        pixels = family.image_processor(images=[read_image(p) for p in chunk], return_tensors='pt')['pixel_values']
        with torch.no_grad():
            states = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        out.update({p: s[1:] for p, s in zip(chunk, states[cfg.model_args.vision_feature_layer], strict=True)})
    return out


def render(episode, vocab: Vocab, layout: str, keys: str, rng: random.Random, slots: int, key_noise: float = 0.3):
    """(ids, labels, keys in order: image paths, or (slots, 128) tensors for `random`) of one episode; labels mark
    every answer's tokens."""
    v = vocab.id
    token_of, centre_of = {}, {}
    names = sorted({name for _, name in episode.support})
    if keys == 'tokens':  # one concept token per shown name, fresh per episode
        token_of = dict(zip(names, rng.sample(range(CONCEPT_TOKENS), len(names)), strict=True))
    if keys == 'random':  # one random centre per shown name, fresh per episode
        g = torch.Generator().manual_seed(rng.getrandbits(63))
        centre_of = {name: torch.randn(slots, 128, generator=g) for name in names}
    ids, labels, paths = [], [], []
    exchanges = [(p, n, False) for p, n in episode.support] + [(episode.query, episode.answer, True)]
    for path, name, is_query in exchanges:
        key = [v[f'<c{token_of[name]}>']] if keys == 'tokens' else [v['<key>']] * slots
        if layout == 'chat':
            question = ([v['and']] if is_query else []) + [v['what'], v['is'], v['this'], v['?']]
            prompt = [v['USER'], v['<ims>'], *key, v['<ime>'], *question, v['ASSIST'], v['"']]
            answer = [v[c] for c in name] + [v['"'], v['.'], v['</s>']]
        else:
            prompt = [v['USER'], *key]
            answer = [v[c] for c in name] + [v['.'], v['</s>']]
        ids += prompt + answer
        labels += [-100] * len(prompt) + answer
        if keys == 'random':
            paths.append(centre_of[name] + key_noise * torch.randn(slots, 128, generator=g))
        elif keys != 'tokens':
            paths.append(path)
    return ids, labels, paths


class Probe(torch.nn.Module):
    """The recipe's LM (random weights) with a linear projector into its key slots."""

    def __init__(self, vocab: Vocab, key_dim: int):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                          attn_implementation='sdpa')
        self.lm = LlamaForCausalLM(cfg)
        self.projector = torch.nn.Linear(key_dim, 128)
        self.key_id = vocab.id['<key>']

    def forward(self, ids, mask, keys, position_ids=None):
        embeds = self.lm.model.embed_tokens(ids)
        if keys is not None:
            embeds = embeds.masked_scatter((ids == self.key_id)[..., None], self.projector(keys).to(embeds.dtype))
        return self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).logits


def batch(rows, bank, left_pad=False):
    width = max(len(r[0]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, (row_ids, row_labels, _) in enumerate(rows):
        span = slice(width - len(row_ids), width) if left_pad else slice(0, len(row_ids))
        ids[b, span], labels[b, span], mask[b, span] = torch.tensor(row_ids), torch.tensor(row_labels), 1
    paths = [p for r in rows for p in r[2]]
    keys = torch.cat([p if isinstance(p, torch.Tensor) else bank[p] for p in paths]) if paths else None
    return ids, labels, mask, keys


def answer_start(row) -> int:
    """Index of the token that predicts the query's first letter (the last prompt token)."""
    labels = row[1]
    end = len(labels)
    start = end - 1
    while start > 0 and labels[start - 1] != -100:
        start -= 1
    return start - 1


@torch.no_grad()
def evaluate(model, rows, answers, vocab, bank):
    """Greedy names for the query of each row (prompt up to the answer's first letter): the four figures."""
    letters = max(len(name) for pair in answers for name in pair)  # as many letters as the longest name
    model.eval()
    counts = dict(accuracy=0, exact_support_name=0, first_letter_positive=0, first_letter_negative=0)
    for start in range(0, len(rows), 32):
        chunk = rows[start:start + 32]
        prompts = [(r[0][:answer_start(r) + 1], r[1][:answer_start(r) + 1], r[2]) for r in chunk]
        generated = [[] for _ in chunk]
        for _ in range(letters):
            ids, _, mask, keys = batch([(p[0] + g, p[1] + [-100] * len(g), p[2])
                                        for p, g in zip(prompts, generated, strict=True)], bank, left_pad=True)
            logits = model(ids, mask, keys, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))[:, -1]
            for g, token in zip(generated, logits.argmax(-1).tolist(), strict=True):
                g.append(token)
        for g, (positive, negative) in zip(generated, answers[start:start + 32], strict=True):
            word = ''.join(vocab.word[t] for t in g)
            counts['accuracy'] += word == positive
            counts['exact_support_name'] += word in (positive, negative)
            counts['first_letter_positive'] += word[:1] == positive[:1]
            counts['first_letter_negative'] += word[:1] == negative[:1]
    model.train()
    return {k: round(c / len(rows), 4) for k, c in counts.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--keys', choices=('features', 'oracle', 'tokens', 'random'), default='features')
    p.add_argument('--key-noise', type=float, default=ORACLE_NOISE, help='random: noise std around each centre')
    p.add_argument('--slots', type=int, default=1, help='random: key slots per example')
    p.add_argument('--layout', choices=('chat', 'bare'), default='chat')
    p.add_argument('--steps', type=int, default=1500)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--pool', action='store_true', help='features: one key slot per image, the mean of its patches')
    p.add_argument('--min-shot', type=int, default=2)
    p.add_argument('--max-shot', type=int, default=8)
    p.add_argument('--eval-every', type=int, default=250)
    p.add_argument('--eval-shot', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--data', default=str(DATA), help='synthetic ISEKAI folder (generated by the recipe if absent)')
    p.add_argument('--save', help='write the LM here at every evaluation')
    p.add_argument('--init', help='start the LM from this --save file')
    p.add_argument('--out', help='write the curve and the arguments here as JSON')
    p.add_argument('--stop-at', type=float, help='stop after an evaluation with the training queries\' first '
                   'letter right this often (a warm start: stop once the LM has learnt the matching)')
    args = p.parse_args(argv)
    for path in (args.save, args.out):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    if not (data / 'train_pairs.jsonl').is_file():
        from mmengine.config import Config

        from mllm.demo.isekai_synth import generate_isekai_synth
        prepare = dict(Config.fromfile(str(RECIPE)).data_args.prepare[0])
        prepare.pop('type')
        generate_isekai_synth(**dict(prepare, root=str(data)))
    train = LCLEpisodeDataset(str(data / 'train_pairs.jsonl'), str(data / 'images'), policy='2way_random',
                              min_shot=args.min_shot, max_shot=args.max_shot, num_episodes=args.steps * args.batch_size,
                              seed=args.seed, rename_prob=1.0, name_letters=(3, 3))
    test = LCLTestEpisodeDataset(str(data / 'test_pairs.jsonl'), str(data / 'images'), shot=args.eval_shot)
    vocab = Vocab()
    bank = None
    slots = 1
    if args.keys == 'random':
        slots = args.slots
    elif args.keys != 'tokens':
        paths = sorted({os.path.join(train.image_root, s) for c in train.classes for s in c['samples']}
                       | {os.path.join(test.image_root, s) for c in test.classes
                          for s in c['context_samples'] + c['test_samples']})
        bank = KeyBank(args.keys, paths, args.seed, pool=args.pool)
        slots = bank[paths[0]].shape[0]
    rng = random.Random(args.seed)
    eval_rng = random.Random(args.seed + 1)
    test_eps = [test.episode(i) for i in range(len(test))]
    eval_rows = [render(e, vocab, args.layout, args.keys, eval_rng, slots, args.key_noise) for e in test_eps]
    eval_answers = [(e.answer, e.others[0]) for e in test_eps]

    torch.manual_seed(args.seed)  # after the tower, which seeds its own build
    model = Probe(vocab, 128)
    if args.init:
        model.lm.load_state_dict(torch.load(args.init)['lm'])
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    warmup = max(1, int(0.05 * args.steps))

    def lr_factor(step):  # linear warm-up, cosine down to 5 % (the recipe's schedule)
        if step < warmup:
            return step / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    curve, first_right, start = [], [], time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = [render(train.episode((step - 1) * args.batch_size + b), vocab, args.layout, args.keys, rng, slots,
                       args.key_noise) for b in range(args.batch_size)]
        ids, labels, mask, keys = batch(rows, bank)
        logits = model(ids, mask, keys)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        with torch.no_grad():
            at = [answer_start(r) for r in rows]
            first_right += (logits[torch.arange(len(rows)), at].argmax(-1) == ids[torch.arange(len(rows)),
                                                                             [a + 1 for a in at]]).tolist()
        if step % args.eval_every == 0 or step == args.steps:
            point = dict(step=step, seconds=round(time.perf_counter() - start, 1), loss=round(loss.item(), 4),
                         train_query_first_letter=round(float(np.mean(first_right[-100:])), 4),
                         **evaluate(model, eval_rows, eval_answers, vocab, bank))
            curve.append(point)
            print(json.dumps(point), flush=True)
            if args.save:
                torch.save({'lm': model.lm.state_dict()}, args.save)
            if args.stop_at is not None and point['train_query_first_letter'] >= args.stop_at:
                break
    result = dict(args=vars(args), curve=curve)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == '__main__':
    main()
