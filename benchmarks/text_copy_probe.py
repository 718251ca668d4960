"""How fast the tiny LM of the LCL CPU reproduction learns to copy a word from its context, text only.

    python benchmarks/text_copy_probe.py [--steps 1300] [--lr 1e-3] [--text '{"num_attention_heads": 8}']

Link-context learning needs a model that copies the name shown next to the matching support image; the paper's
models start from Vicuna, which copies already, ours from random weights. This probe isolates that skill: each
sequence shows two made-up names (4..8 random letters) 8 times in random order ('What is this? It is "xkqe"'),
and the loss is taken on the names and quotes only. A name's first showing cannot be predicted (uniform letters:
log 26 = 3.26 nats a letter); every later one can be copied. Uniform guessing gives about 2.45 per labelled token,
perfect copying about 0.6. Prints the loss every 50 steps and a final JSON line.
Uses the LLaVA of config/lcl_cpu/lcl_synth_2way_random.py (model_args.tiny.text overridable with --text), AdamW
betas (0.9, 0.98), batch 16, constant learning rate; seeded.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from mmengine.config import Config

from mllm.models import build_model

CONFIG = 'config/lcl_cpu/lcl_synth_2way_random.py'


def copy_sequence(rng: random.Random, tokenizer, shows: int = 8) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one sequence: two names, each showing of one labelled."""
    letters = [tokenizer.convert_tokens_to_ids(c) for c in 'abcdefghijklmnopqrstuvwxyz']
    open_quote, close_quote = tokenizer.convert_tokens_to_ids(['▁"', '"'])
    prompt = tokenizer.convert_tokens_to_ids(tokenizer.tokenize('What is this? It is'))
    names = [[rng.choice(letters) for _ in range(rng.randint(4, 8))] for _ in range(2)]
    ids, labels = [tokenizer.bos_token_id], [-100]
    for _ in range(shows):
        answer = [open_quote, *names[rng.randint(0, 1)], close_quote]
        ids += prompt + answer
        labels += [-100] * len(prompt) + answer
    return ids, labels


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=1300)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--text', default='{}', help='JSON of model_args.tiny.text overrides')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    model_args = Config.fromfile(str(Path(__file__).resolve().parents[1] / CONFIG)).model_args
    model_args.tiny.text.update(json.loads(a.text))
    torch.manual_seed(a.seed)
    model, family = build_model(model_args)
    tokenizer = family.tokenizer
    rng = random.Random(a.seed)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, betas=(0.9, 0.98),
                                  weight_decay=0.0)
    model.train()
    start, curve = time.perf_counter(), []
    pad = tokenizer.pad_token_id
    for step in range(a.steps + 1):
        batch = [copy_sequence(rng, tokenizer) for _ in range(a.batch)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        loss = model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            curve.append((step, round(loss.item(), 3), round(time.perf_counter() - start, 1)))
            print(f'step {step:5d}  loss {loss.item():.3f}  {curve[-1][2]:.0f} s', flush=True)
    result = {'final_loss': curve[-1][1], 'steps': a.steps, 'lr': a.lr, 'text': json.loads(a.text),
              'uniform_guess_loss': 2.45, 'perfect_copy_loss': 0.6, 'curve': curve}
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
