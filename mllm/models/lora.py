"""LoRA adapters on a language model through peft (`pip install mllm[lora]`).

`inject_lora(language_model, cfg)` adds peft LoRA layers IN PLACE (`peft.inject_adapter_in_model`): the
module's own parameter names stay as they were and the adapters appear beside them
(`...q_proj.lora_A.default.weight`), so a saved model reloads by name once the same adapters are
injected at construction (the model config keeps `cfg`). `cfg`: r, alpha, dropout, target_modules
(default: the attention projections of the LM's type, e.g. LLaMA q_proj / v_proj, MPT Wqkv).
"""
from __future__ import annotations

DEFAULT_TARGETS = {'llama': ['q_proj', 'v_proj'], 'mistral': ['q_proj', 'v_proj'], 'mpt': ['Wqkv'],
                   'gpt_neox': ['query_key_value']}
LORA_KEYS = ('r', 'alpha', 'dropout', 'target_modules')


def lora_settings(cfg: dict, model_type: str) -> dict:
    unknown = set(cfg) - set(LORA_KEYS)
    if unknown:
        raise ValueError(f"lora: unknown key(s) {sorted(unknown)}; valid: {', '.join(LORA_KEYS)}")
    targets = cfg.get('target_modules') or DEFAULT_TARGETS.get(model_type)
    if not targets:
        raise ValueError(f"lora: no default target_modules for a {model_type!r} language model; "
                         f"set lora.target_modules")
    return {'r': int(cfg.get('r', 8)), 'alpha': int(cfg.get('alpha', 16)), 'dropout': float(cfg.get('dropout', 0.0)),
            'target_modules': list(targets)}


def inject_lora(language_model, settings: dict):
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install 'mllm[lora]'") from e
    config = LoraConfig(r=settings['r'], lora_alpha=settings['alpha'], lora_dropout=settings['dropout'],
                        target_modules=settings['target_modules'], bias='none')
    return inject_adapter_in_model(config, language_model)
