"""Batch collation: right padding for training, left padding for generation.

Generation appends tokens at the right end of every row, so prompts must end at the same column:
left padding. Training pads on the right and masks the padding in `labels`. Image tensors of all
samples are concatenated along the first axis in sample order (a sample may hold zero, one or several
images; the model splices them into the image-token positions in the same order). A batch without
any image has no `pixel_values`.

Generation batches also carry `sample_index` (the position of each sample in the dataset being
predicted, when the trainer's index wrapper provides it) and `skipped` (1 for the stand-in of a
sample the dataset skipped), so predictions can be put back in dataset order after gathering.

`pack_tokens` (training only; the LLaVA family, and the Flamingo family through FlamingoCollator): samples are
packed into rows of at most `pack_tokens` tokens (first fit, longest first; a longer sample gets a row of its own)
instead of one padded row each. Each sample keeps its own positions (`position_ids` restart at 0), and there is no
`attention_mask`: transformers then reads the restarts as sample borders and blocks attention across them (a block-
diagonal causal mask under SDPA and eager, varlen under flash-attn), with `use_cache=False` so that it does. Images
stay in token order (row by row). A sample's first token is never a label, so no loss crosses a border (checked).
The loss is the mean over the batch's label tokens, packed or not, so a packed batch gives the unpacked batch's loss
and gradients.

`trim_logits` (training only): a loss is taken only where the next token is a label, so the model is asked for
the logits of exactly those positions, row by row (a boolean `logits_to_keep`, which transformers' causal LMs
accept), and the loss gets their targets as `shift_labels`. The loss is unchanged; the vocabulary projection and
its softmax, a large share of a small model's step, shrink to the answer tokens, also in multi-turn and packed
batches, where the answers are spread over the rows.
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


def pack_rows(lengths: list[int], budget: int) -> list[list[int]]:
    """Sample indices grouped into rows of at most `budget` tokens: first fit, longest first (a sample longer than
    the budget gets a row of its own). Rows keep their samples in batch order; rows follow their first sample."""
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(budget - lengths[i])
    rows = [sorted(row) for row in rows]
    return sorted(rows, key=lambda row: row[0])


class Collator:
    """padding_side='right' for training batches, 'left' for generation batches."""

    def __init__(self, pad_token_id: int, padding_side: str = 'right', trim_logits: bool = False,
                 pack_tokens: int | None = None):
        if padding_side not in ('left', 'right'):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if pack_tokens is not None and (not isinstance(pack_tokens, int) or pack_tokens < 1):
            raise ValueError(f"pack_tokens must be a positive number of tokens, got {pack_tokens!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.trim_logits = trim_logits
        self.pack_tokens = pack_tokens if padding_side == 'right' else None  # generation batches are never packed

    def __call__(self, samples: list[dict]) -> dict:
        if self.pack_tokens is not None and 'labels' in samples[0]:
            return self._packed(samples)
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

    def _packed(self, samples: list[dict]) -> dict:
        for k, s in enumerate(samples):
            if len(s['labels']) and s['labels'][0] != IGNORE_INDEX:
                raise ValueError(f"packing: sample {k} of the batch starts with a label token; its first token would "
                                 f"be predicted from the previous sample's last one")
        rows = pack_rows([len(s['input_ids']) for s in samples], self.pack_tokens)
        ordered = [samples[i] for row in rows for i in row]
        width = max(sum(len(samples[i]['input_ids']) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=samples[0]['input_ids'].dtype)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=samples[0]['labels'].dtype)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                n = len(samples[i]['input_ids'])
                ids[r, at:at + n] = samples[i]['input_ids']
                labels[r, at:at + n] = samples[i]['labels']
                positions[r, at:at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)  # the padding: a block of its own, never a label
        batch = {'input_ids': ids, 'labels': labels, 'position_ids': positions, 'use_cache': False,
                 # the real lengths, for the token counts; MllmTrainer takes them out before the model sees the batch
                 'sample_lengths': torch.tensor([len(s['input_ids']) for s in ordered])}
        images = [s['pixel_values'] for s in ordered if s.get('pixel_values') is not None]
        if images:
            batch['pixel_values'] = torch.cat(images, dim=0)
        if self.trim_logits:
            self._trim(batch)
        return batch

    @staticmethod
    def _trim(batch: dict) -> None:
        labels = batch['labels']
        # The logit at column c predicts the label at c + 1: keep exactly the columns whose next token is a label,
        # row by row (transformers' boolean `logits_to_keep`; logits come out flattened, one row per kept
        # position), and give the loss those positions' targets in the same order (`shift_labels`).
        targets = labels[:, 1:] != IGNORE_INDEX
        if not targets.any():
            return
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets
        batch['logits_to_keep'] = keep
        batch['shift_labels'] = labels[:, 1:][targets]
