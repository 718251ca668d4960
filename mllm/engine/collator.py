"""Batch collation: right padding for training, left padding for generation.

Generation appends tokens at the right end of every row, so prompts must end at the same column:
left padding. Training pads on the right and masks the padding in `labels`. Image tensors of all
samples are concatenated along the first axis in sample order (a sample may hold zero, one or several
images; the model splices them into the image-token positions in the same order). A batch without
any image has no `pixel_values`.

Generation batches also carry `sample_index` (the position of each sample in the dataset being
predicted, when the trainer's index wrapper provides it) and `skipped` (1 for the stand-in of a
sample the dataset skipped), so predictions can be put back in dataset order after gathering.

`trim_logits` (training only): no loss is taken before the first answer token of the batch, so the
model is asked for logits of the last K positions only (`logits_to_keep`, which transformers'
causal LMs accept) and `labels` are cut to the same K columns. The loss is unchanged; the vocabulary
projection and its softmax, a large share of a small model's step, shrink to the answer region.
"""
from __future__ import annotations

import torch

from ..dataset.root import IGNORE_INDEX


def _pad(sequences, value: int, side: str) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=sequences[0].dtype)
    for row, seq in enumerate(sequences):
        if side == 'right':
            out[row, :len(seq)] = seq
        else:
            out[row, width - len(seq):] = seq
    return out


class Collator:
    """padding_side='right' for training batches, 'left' for generation batches."""

    def __init__(self, pad_token_id: int, padding_side: str = 'right', trim_logits: bool = False):
        if padding_side not in ('left', 'right'):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.trim_logits = trim_logits

    def __call__(self, samples: list[dict]) -> dict:
        ids = [s['input_ids'] for s in samples]
        batch = {
            'input_ids': _pad(ids, self.pad_token_id, self.padding_side),
            'attention_mask': _pad([torch.ones_like(i) for i in ids], 0, self.padding_side),
        }
        images = [s['pixel_values'] for s in samples if s.get('pixel_values') is not None]
        if images:
            batch['pixel_values'] = torch.cat(images, dim=0)
        if 'sample_index' in samples[0]:
            batch['sample_index'] = torch.tensor([s['sample_index'] for s in samples], dtype=torch.long)
        if any('skipped' in s for s in samples) or 'sample_index' in samples[0]:
            batch['skipped'] = torch.tensor([int('skipped' in s) for s in samples], dtype=torch.long)
        if 'labels' in samples[0]:
            # Reference answers of generation batches are right-padded: they are only decoded.
            batch['labels'] = _pad([s['labels'] for s in samples], IGNORE_INDEX, 'right')
            if self.trim_logits and self.padding_side == 'right':  # never cut generation references
                self._trim(batch)
        return batch

    @staticmethod
    def _trim(batch: dict) -> None:
        labels = batch['labels']
        answer_columns = (labels != IGNORE_INDEX).any(dim=0).nonzero()
        if len(answer_columns) == 0:
            return
        # The logit at column c predicts the label at c + 1: keep from one column before the first label.
        keep = labels.shape[1] - int(answer_columns[0]) + 1
        batch['labels'] = labels[:, -keep:]
        batch['logits_to_keep'] = keep
