"""`FlamingoConvDataset`: the canonical item rendered for Flamingo-style models (OpenFlamingo, Otter).

The shared renderer (`SingleImageConvDataset`) does the work: validation, per-image transform with
each image's own boxes, box text, template, tokenisation with character spans, label masking. What
differs for a Flamingo-style model:
- an `<image>` stays ONE token (the media token: the model's gated cross-attention reads the image,
  no image tokens are spliced into the sequence);
- a media may be a video: a list of frames (MIMIC-IT's video instructions), each frame transformed
  and processed on its own;
- pixel values are `(T_img, F, C, H, W)` per sample: T_img media in order, F frames each. Media of
  one sample with fewer frames than the longest are padded by repeating their last frame (a zero
  frame would add meaningless features to the perceiver's input; a repeated one adds none new).
`FlamingoCollator` pads T_img and F across the batch with zeros; padded media are never referenced
by a media token, so the model never attends to them. With `pack_tokens` (engine/collator.py) a packed
row's media are its samples' media in token order, and the model starts each sample's media time at
that sample's own first image (`packed_text_time`), so no token cross-attends to another sample's image.
"""
from __future__ import annotations

import torch

from ..engine.collator import Collator, pack_rows
from .single_image_conversation import SingleImageConvDataset
from .validation import InvalidSampleError


class FlamingoConvDataset(SingleImageConvDataset):
    """SingleImageConvDataset with one media token per `<image>` and (T_img, F, C, H, W) pixel values."""

    accepts_video = True

    def __init__(self, dataset, preprocessor: dict, *args, **kwargs):
        super().__init__(dataset, dict(preprocessor, num_image_tokens=1), *args, **kwargs)

    def transform_images(self, images, target, apply_transform: bool = True):
        videos = {k for k, media in enumerate(images) if isinstance(media, (list, tuple))}
        owners = (target.get('boxes_image') or [0] * len(target.get('boxes') or [])) + \
                 (target.get('points_image') or [0] * len(target.get('points') or []))
        if videos & set(owners):
            raise InvalidSampleError(f"{self.name}: boxes or points on a video media (a list of frames) are not "
                                     f"supported; give them to a still image")
        frames = [media if isinstance(media, (list, tuple)) else [media] for media in images]
        firsts = [f[0] for f in frames]
        firsts, boxes, points = super().transform_images(firsts, target, apply_transform)
        out = []
        for media, first in zip(frames, firsts, strict=True):
            rest = [self.transform(f, None)[0] if (self.transform is not None and apply_transform) else f
                    for f in media[1:]]
            out.append([first, *rest])
        return out, boxes, points

    def process_images(self, images) -> torch.Tensor | None:
        """(T_img, F, C, H, W); None for a text-only sample."""
        if not images:
            return None
        media = [torch.cat([self.image_processor(images=f, return_tensors='pt')['pixel_values'] for f in frames])
                 for frames in images]
        num_frames = max(m.shape[0] for m in media)
        media = [torch.cat([m, m[-1:].expand(num_frames - m.shape[0], *m.shape[1:])]) for m in media]
        return torch.stack(media)


class FlamingoCollator(Collator):
    """Collator whose `pixel_values` are (B, T_img, F, C, H, W), zero-padded over media and frames."""

    def __call__(self, samples: list[dict]) -> dict:
        stacks = [s.get('pixel_values') for s in samples]
        batch = super().__call__([{k: v for k, v in s.items() if k != 'pixel_values'} for s in samples])
        if 'sample_lengths' in batch:  # packed: a row's media are its samples' media in token order
            rows = pack_rows([len(s['input_ids']) for s in samples], self.pack_tokens)
            stacks = [self._row_media([stacks[i] for i in row]) for row in rows]
        present = [p for p in stacks if p is not None]
        if present:
            num_media = max(p.shape[0] for p in present)
            num_frames = max(p.shape[1] for p in present)
            shape = present[0].shape[2:]
            out = torch.zeros(len(stacks), num_media, num_frames, *shape, dtype=present[0].dtype)
            for row, p in enumerate(stacks):
                if p is not None:
                    out[row, :p.shape[0], :p.shape[1]] = p
            batch['pixel_values'] = out
        return batch

    @staticmethod
    def _row_media(stacks: list) -> torch.Tensor | None:
        """One packed row's (T, F, C, H, W): its samples' media one after the other, frames padded by zeros."""
        present = [p for p in stacks if p is not None]
        if not present:
            return None
        frames = max(p.shape[1] for p in present)
        return torch.cat([torch.cat([p, p.new_zeros(p.shape[0], frames - p.shape[1], *p.shape[2:])], dim=1)
                          for p in present])
