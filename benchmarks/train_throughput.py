"""Training throughput of a config's model on this machine: samples/second of forward+backward+step.

    python benchmarks/train_throughput.py config/demo/shapes_rec_tiny_llava.py [--steps 20] [--batch 32]

Uses a synthetic batch with the config's sequence shape (image tokens + a typical prompt), so it
measures the model and optimizer alone, not data loading. Report ratios measured in one run: the
machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from mmengine.config import Config

from mllm.models import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--text-tokens', type=int, default=40, help='prompt + answer tokens besides the image')
    args = parser.parse_args()

    model_args = Config.fromfile(args.config).model_args
    model, family = build_model(model_args)
    pre = family.preprocessor
    n_img = pre['num_image_tokens']
    size = pre['image'].crop_size['height']
    image_id = pre['text'].convert_tokens_to_ids(pre['image_token'])
    torch.manual_seed(0)
    ids = torch.randint(10, len(pre['text']), (args.batch, n_img + args.text_tokens))
    ids[:, 5:5 + n_img] = image_id
    labels = ids.clone()
    labels[:, :5 + n_img] = -100
    batch = {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': labels,
             'pixel_values': torch.randn(args.batch, 3, size, size)}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    for step in range(args.steps + 3):
        if step == 3:  # warm-up steps excluded
            start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - start) / args.steps
    total = sum(p.numel() for p in model.parameters())
    print(f'params {total / 1e6:.2f}M (trainable {sum(p.numel() for p in params) / 1e6:.2f}M), '
          f'seq {ids.shape[1]}, batch {args.batch}, threads {torch.get_num_threads()}: '
          f'{seconds * 1000:.0f} ms/step, {args.batch / seconds:.1f} samples/s')


if __name__ == '__main__':
    main()
