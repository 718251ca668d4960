"""Perceiver resampler of (Open)Flamingo: a fixed set of learned latents reads each image's (or
video's) patch features and returns `num_latents` visual tokens per media.

Parameter names (`latents`, `frame_embs`, `media_time_embs`, `layers.{i}.0` attention, `layers.{i}.1`
feed-forward, `norm`) follow OpenFlamingo's so released weights map one to one.
"""
import torch
import torch.nn.functional as F
from torch import nn


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    """Pre-norm MLP without biases (LayerNorm, Linear, GELU, Linear): indices 0/1/3 as in OpenFlamingo."""
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


class PerceiverAttention(nn.Module):
    """Latents attend to [media features; latents] (keys and values from both, queries from the latents)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, x):  # (..., n, h*d) -> (..., h, n, d)
        return x.unflatten(-1, (self.heads, self.dim_head)).transpose(-3, -2)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x: (B, T, n_features, D); latents: (B, T, n_latents, D) -> (B, T, n_latents, D)."""
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        q = self._split(self.to_q(latents))
        k, v = self.to_kv(torch.cat([x, latents], dim=-2)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, self._split(k), self._split(v))
        return self.to_out(out.transpose(-3, -2).flatten(-2))


class PerceiverResampler(nn.Module):
    def __init__(self, dim: int, depth: int = 6, dim_head: int = 64, heads: int = 8, num_latents: int = 64,
                 max_num_media: int | None = None, max_num_frames: int | None = None, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        # Optional, as in OpenFlamingo: the released image models have neither embedding.
        self.frame_embs = nn.Parameter(torch.randn(max_num_frames, dim)) if max_num_frames else None
        self.media_time_embs = nn.Parameter(torch.randn(max_num_media, 1, dim)) if max_num_media else None
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)])
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, F, v, D) patch features of T media of F frames -> (B, T, num_latents, D)."""
        b, t, f, v, d = x.shape
        if self.frame_embs is not None:
            if f > self.frame_embs.shape[0]:
                raise ValueError(f'{f} frames per media but max_num_frames={self.frame_embs.shape[0]}')
            x = x + self.frame_embs[:f].view(1, 1, f, 1, d).to(x.dtype)
        x = x.reshape(b, t, f * v, d)  # all frames of one media are read together
        if self.media_time_embs is not None:
            if t > self.media_time_embs.shape[0]:
                raise ValueError(f'{t} media per sample but max_num_media={self.media_time_embs.shape[0]}')
            x = x + self.media_time_embs[:t].unsqueeze(0).to(x.dtype)
        latents = self.latents.to(x.dtype).expand(b, t, -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)
