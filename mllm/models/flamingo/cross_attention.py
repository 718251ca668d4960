"""Gated cross-attention block of (Open)Flamingo, run in front of a decoder layer of the wrapped LM.

Text tokens attend to the perceiver latents of the media selected by `text_time` (per token: the
1-based index of the last media token at or before it, 0 = none). Both residual branches are scaled
by tanh of a scalar gate initialised to 0, so a fresh block is the identity. Parameter names
(`attn.norm`, `attn.to_q`, `attn.to_kv`, `attn.to_out`, `attn_gate`, `ff.{0,1,3}`, `ff_gate`) follow
OpenFlamingo's.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .perceiver import feed_forward


def media_attention_mask(text_time: torch.Tensor, num_media: int, num_latents: int,
                         only_immediate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) text_time -> boolean mask (B, 1, L, num_media * num_latents) and (B, L) "has media" flags.

    Rows without any visible media (before the first image, or more media tokens than images) are
    given an all-True mask so SDPA yields no NaN; the caller zeroes their output with the flags.
    """
    media_time = torch.arange(1, num_media + 1, device=text_time.device).repeat_interleave(num_latents)
    tt = text_time.unsqueeze(-1)
    allowed = (media_time == tt) if only_immediate else (media_time <= tt)
    has_media = allowed.any(-1)
    allowed = allowed | ~has_media.unsqueeze(-1)
    return allowed.unsqueeze(1), has_media


class MaskedCrossAttention(nn.Module):
    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8,
                 only_attend_immediate_media: bool = True):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.only_attend_immediate_media = only_attend_immediate_media
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, x):  # (B, n, h*d) -> (B, h, n, d)
        return x.unflatten(-1, (self.heads, self.dim_head)).transpose(1, 2)

    def forward(self, x: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor) -> torch.Tensor:
        """x: (B, L, dim); media: (B, T, n_latents, dim_visual); text_time: (B, L) -> (B, L, dim)."""
        b, t, n, _ = media.shape
        q = self._split(self.to_q(self.norm(x)))
        k, v = self.to_kv(media.reshape(b, t * n, -1)).chunk(2, dim=-1)
        mask, has_media = media_attention_mask(text_time, t, n, self.only_attend_immediate_media)
        out = F.scaled_dot_product_attention(q, self._split(k), self._split(v), attn_mask=mask)
        out = out.transpose(1, 2).flatten(2) * has_media.unsqueeze(-1).to(out.dtype)
        return self.to_out(out)  # no bias, so tokens without media get exactly 0


class GatedCrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8, ff_mult: int = 4,
                 only_attend_immediate_media: bool = True):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, dim_head, heads, only_attend_immediate_media)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, media: torch.Tensor | None, text_time: torch.Tensor) -> torch.Tensor:
        """media None (a text-only batch): no attention branch; the feed-forward still runs, as it does on
        image-free tokens of an image batch, so text-only and image batches are treated alike."""
        if media is not None:
            x = self.attn(x, media, text_time) * self.attn_gate.tanh() + x
        return self.ff(x) * self.ff_gate.tanh() + x
