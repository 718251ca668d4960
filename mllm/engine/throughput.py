"""Per-run throughput and MFU: real (non-padding) tokens/s and model FLOPs utilisation on real tokens.

`ThroughputCallback` (registered by finetune.py) adds to every training log entry, and to the final
`train_results.json`:

    real_tokens_per_s     attention-mask ones per second (text + image tokens), summed over ranks
    padded_tokens_per_s   batch x padded length per second
    padding_fraction      1 - real / padded
    mfu_real              model FLOPs of the real tokens / seconds / matmul peak (per process)
    mfu_padded            the same, crediting the compute spent on padding
    matmul_peak_gflops    the peak: a 2048^3 matmul in the run's dtype, median of 5 after 3 warm-up runs,
                          measured ONCE per process at the first train begin (~1 s on 2 CPU cores; set
                          MLLM_MATMUL_PEAK_GFLOPS to skip the measurement and use that value)

The trainer hands each training batch to the callback (`MllmTrainer.training_step` calls `on_batch`),
which records the per-sample real lengths, the padded length and the number of images.

FLOPs (`LlavaFlops`, from the model config; the formula of the TRL anchor in ../shared/bench/trl/bench_trl.py,
generalised): per optimizer step, with fwd+bwd = 6 FLOPs per parameter per token, forward only = 2,

    dense = 6*N_lm*T + f_proj*N_proj*I + f_vis*(N_patch*P + L_v*N_vlayer*S)*n_img
    attn  = 12*L*d*sum(len_i^2) + (2*f_vis)*L_v*d_v*S^2*n_img

N_lm = LM decoder layers + final norm + lm_head (the input-embedding lookup is not a matmul); T = tokens through the
LM (text + image tokens); I = image tokens through the projector; P = patches, S = vision sequence (patches + CLS);
L_v = vision layers executed (transformers' LLaVA runs the whole tower even when the feature layer is -2). The
vision tower counts forward only (f_vis = 2) when frozen, 6 when it trains; the projector 6 when it or the tower
trains, else 2. Attention uses the full-L^2 convention (causal skipping not credited); "real" uses each sample's
real length, "padded" batch x padded length. Gradient-checkpointing recompute is not counted (model FLOPs), and
neither is the lm_head work that `trim_logits` saves: the same model FLOPs are credited either way.

Flamingo family (OpenFlamingo / Otter): tokens are counted, `mfu_real` is None (`mfu_note` says why): its FLOP
formula (perceiver resampler, gated cross-attention every k layers, media-dependent lengths) is not implemented.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)
_PEAK_CACHE: dict = {}


# -- matmul peak ---------------------------------------------------------------------------------
def matmul_peak_gflops(dtype=torch.float32, device='cpu', n: int = 2048, warmup: int = 3, reps: int = 5) -> float:
    """GFLOP/s of an n^3 matmul: median of `reps` after `warmup` runs (the anchor's probe)."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    c = torch.empty(n, n, dtype=dtype, device=device)
    for _ in range(warmup):
        torch.matmul(a, b, out=c)
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        sync()
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def cached_matmul_peak(dtype=torch.float32, device='cpu') -> float:
    """The peak, measured once per process, dtype and device (or MLLM_MATMUL_PEAK_GFLOPS)."""
    if os.environ.get('MLLM_MATMUL_PEAK_GFLOPS'):
        return float(os.environ['MLLM_MATMUL_PEAK_GFLOPS'])
    key = (str(dtype), str(device), torch.get_num_threads())
    if key not in _PEAK_CACHE:
        _PEAK_CACHE[key] = matmul_peak_gflops(dtype, device)
    return _PEAK_CACHE[key]


# -- FLOP formula ----------------------------------------------------------------------------------
def _get(config, name, default=None):
    value = getattr(config, name, default)
    return default if value is None else value


def llama_layer_params(tc) -> int:
    d, inter = tc.hidden_size, tc.intermediate_size
    heads = tc.num_attention_heads
    kv = _get(tc, 'num_key_value_heads', heads)
    hd = _get(tc, 'head_dim', d // heads)
    attn_bias = (heads * hd + 2 * kv * hd + d) if _get(tc, 'attention_bias', False) else 0
    attn = d * heads * hd + 2 * d * kv * hd + heads * hd * d + attn_bias
    mlp = 3 * d * inter + ((2 * inter + d) if _get(tc, 'mlp_bias', False) else 0)
    return attn + mlp + 2 * d  # + input and post-attention RMSNorm weights


def clip_layer_params(vc) -> int:
    d, inter = vc.hidden_size, vc.intermediate_size
    return 4 * (d * d + d) + (d * inter + inter) + (inter * d + d) + 2 * 2 * d  # attn, fc1, fc2, 2 LayerNorms


@dataclass
class LlavaFlops:
    """FLOP counts of a LLaVA-architecture model (CLIP tower + projector + Llama-style LM), from its config."""
    n_lm: int               # LM layers + final norm + lm_head
    n_proj: int
    n_patch: int            # patch-embedding conv
    n_vlayer: int           # one vision encoder layer
    vision_layers: int      # executed per forward
    lm_layers: int
    lm_hidden: int
    vision_hidden: int
    patches: int            # per image
    vision_seq: int         # patches + CLS
    image_tokens: int       # per image, through the projector and the LM
    vision_factor: int = 2  # 2: frozen tower (forward only), 6: trained
    proj_factor: int = 6

    @classmethod
    def from_config(cls, config, vision_trainable: bool = False, projector_trainable: bool = True) -> LlavaFlops:
        tc, vc = config.text_config, config.vision_config
        d, dv = tc.hidden_size, vc.hidden_size
        bias = _get(config, 'multimodal_projector_bias', True)
        layer = _get(config, 'vision_feature_layer', -2)
        dv_in = dv * (1 if isinstance(layer, int) else len(layer))
        if _get(config, 'projector_type', 'mlp2x_gelu') == 'linear':
            n_proj = dv_in * d + (d if bias else 0)
        else:
            n_proj = dv_in * d + d * d + (2 * d if bias else 0)
        patches = (vc.image_size // vc.patch_size) ** 2
        full = _get(config, 'vision_feature_select_strategy', 'default') == 'full'
        return cls(
            n_lm=tc.num_hidden_layers * llama_layer_params(tc) + d + tc.vocab_size * d,
            n_proj=n_proj, n_patch=_get(vc, 'num_channels', 3) * vc.patch_size ** 2 * dv,
            n_vlayer=clip_layer_params(vc), vision_layers=vc.num_hidden_layers,
            lm_layers=tc.num_hidden_layers, lm_hidden=d, vision_hidden=dv,
            patches=patches, vision_seq=patches + 1, image_tokens=patches + 1 if full else patches,
            vision_factor=6 if vision_trainable else 2,
            proj_factor=6 if (projector_trainable or vision_trainable) else 2)

    def step(self, seq_lens, padded_len: int | None = None, n_images: int = 0, rows: int | None = None) -> dict:
        """{'real': {dense, attn, total}, 'padded': {...}} for one batch (GA=1). `rows`: the batch's rows when
        samples are packed several to a row (default: one sample a row)."""
        vision = self.vision_factor * (self.n_patch * self.patches
                                       + self.vision_layers * self.n_vlayer * self.vision_seq) * n_images
        vision_attn = 2 * self.vision_factor * self.vision_layers * self.vision_hidden * self.vision_seq ** 2 * n_images
        proj = self.proj_factor * self.n_proj * self.image_tokens * n_images
        seq_lens = [int(x) for x in seq_lens]
        padded_len = max(seq_lens) if padded_len is None else padded_len
        rows = len(seq_lens) if rows is None else rows
        out = {}
        for kind, tokens, squares in (('real', sum(seq_lens), sum(x * x for x in seq_lens)),
                                      ('padded', rows * padded_len, rows * padded_len ** 2)):
            dense = 6 * self.n_lm * tokens + proj + vision
            attn = 12 * self.lm_layers * self.lm_hidden * squares + vision_attn
            out[kind] = {'dense': dense, 'attn': attn, 'total': dense + attn}
        return out


def flop_counter(model) -> tuple[LlavaFlops | None, str | None]:
    """(counter, None) for a LLaVA-architecture model, (None, reason) otherwise."""
    base = model.get_base_model() if hasattr(model, 'get_base_model') else model  # peft
    base = getattr(base, 'module', base)  # DDP-style wrappers
    config = getattr(base, 'config', None)
    inner = getattr(base, 'model', None)
    if config is None or not all(hasattr(config, k) for k in ('text_config', 'vision_config')) \
            or not hasattr(inner, 'vision_tower') or not hasattr(inner, 'multi_modal_projector'):
        name = type(base).__name__
        return None, f'no FLOP formula for {name} (implemented for the LLaVA family only); tokens are counted'
    trains = lambda module: any(p.requires_grad for p in module.parameters())  # noqa: E731
    return LlavaFlops.from_config(config, vision_trainable=trains(inner.vision_tower),
                                  projector_trainable=trains(inner.multi_modal_projector)), None


# -- callback --------------------------------------------------------------------------------------
def batch_summary(inputs: dict) -> dict | None:
    """Per-sample real lengths, padded row length, rows and images of a training batch: from the attention mask,
    or, for a packed batch (no mask), from the `sample_lengths` its collator records."""
    if not isinstance(inputs, dict):
        return None
    pixels = inputs.get('pixel_values')
    images = int(pixels.shape[0]) if pixels is not None and pixels.dim() == 4 else 0
    if inputs.get('sample_lengths') is not None:
        rows, width = inputs['input_ids'].shape
        return {'seq_lens': inputs['sample_lengths'].tolist(), 'padded_len': int(width), 'rows': int(rows),
                'images': images}
    mask = inputs.get('attention_mask')
    if mask is None:
        return None
    return {'seq_lens': mask.sum(1).tolist(), 'padded_len': int(mask.shape[1]), 'rows': int(mask.shape[0]),
            'images': images}


class ThroughputCallback(TrainerCallback):
    """Logs real / padded tokens/s, padding fraction and MFU on real and padded tokens (see the module doc)."""

    def __init__(self):
        self.counter, self.note, self.peak = None, None, None
        self._window = self._total = None
        self._warned_peak = False

    @staticmethod
    def _zero() -> dict:
        return {'real': 0, 'padded': 0, 'flops_real': 0, 'flops_padded': 0, 'steps': 0}

    def on_batch(self, inputs: dict) -> None:
        """Called by MllmTrainer.training_step with every training (micro-)batch."""
        summary = batch_summary(inputs)
        if summary is None or self._window is None:
            return
        real = sum(summary['seq_lens'])
        padded = summary['rows'] * summary['padded_len']
        flops = self.counter.step(summary['seq_lens'], summary['padded_len'], summary['images'],
                                  rows=summary['rows']) if self.counter else None
        for acc in (self._window, self._total):
            acc['real'] += real
            acc['padded'] += padded
            acc['steps'] += 1
            if flops:
                acc['flops_real'] += flops['real']['total']
                acc['flops_padded'] += flops['padded']['total']

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.counter, self.note = flop_counter(model)
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
        self.peak = cached_matmul_peak(dtype, args.device)
        self._window, self._total = self._zero(), self._zero()
        self._t_window = self._t_total = time.perf_counter()

    def _figures(self, acc: dict, seconds: float, args) -> dict:
        real, padded = acc['real'], acc['padded']
        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.tensor([real, padded], dtype=torch.float64, device=args.device)
            torch.distributed.all_reduce(t)
            real, padded = int(t[0]), int(t[1])
        out = {'real_tokens_per_s': real / seconds, 'padded_tokens_per_s': padded / seconds,
               'padding_fraction': 1 - real / padded if padded else 0.0}
        if self.counter is not None and self.peak:  # without a FLOP formula there is no MFU key (mfu_note says why)
            out['mfu_real'] = acc['flops_real'] / seconds / 1e9 / self.peak
            out['mfu_padded'] = acc['flops_padded'] / seconds / 1e9 / self.peak
            if out['mfu_padded'] > 1 and not self._warned_peak:
                # Not a real figure: the peak was measured while other work held the cores (seen: 1.5 after a
                # peak measured under load). Say so once rather than let it pass as an achievement.
                self._warned_peak = True
                logger.warning('MFU %.2f is above 1: the matmul peak (%.1f GFLOP/s) was measured while the machine '
                               'was busier than it is now; set MLLM_MATMUL_PEAK_GFLOPS to an idle measurement for '
                               'comparable figures', out['mfu_padded'], self.peak)
        return out

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._window is None or logs is None:
            return
        now = time.perf_counter()
        final = 'train_runtime' in logs
        if not final and 'loss' not in logs:  # an evaluation's entry: the training window goes on
            return
        acc, start = (self._total, self._t_total) if final else (self._window, self._t_window)
        if not acc['padded']:
            return
        figures = self._figures(acc, max(now - start, 1e-9), args)
        if final:  # train_results.json: the whole run
            figures.update(matmul_peak_gflops=self.peak, real_tokens=acc['real'], padded_tokens=acc['padded'])
            if self.counter is not None:
                figures['achieved_gflops_real'] = acc['flops_real'] / (now - start) / 1e9
            if self.note:
                figures['mfu_note'] = self.note
        logs.update(figures)  # the same dict becomes the TrainOutput metrics (train_results.json)
        if state.log_history:
            state.log_history[-1].update(figures)
        if not final:
            self._window, self._t_window = self._zero(), now
