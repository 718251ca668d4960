"""Memory savers shared by the model families: LoRA adapters on a language model through peft
(`pip install mllm[lora]`), merging them back, and 8-bit / 4-bit loading through bitsandbytes.

- `inject_lora(language_model, settings)` adds peft LoRA layers IN PLACE (`peft.inject_adapter_in_model`): a
  targeted `nn.Linear` becomes a peft `lora.Linear` that holds it as `base_layer`, so its weight is saved as
  `...q_proj.base_layer.weight` beside the adapters (`...q_proj.lora_A.default.weight`). A saved model therefore
  reloads by name once the same adapters are injected at construction: the model config keeps `settings`
  (`config.lora`) and the family's model class re-injects from it. `settings` (from `lora_settings`): r, alpha,
  dropout, target_modules (default: the attention projections of the LM's type, e.g. LLaMA q_proj / v_proj,
  MPT Wqkv).
- `merge_lora(model)` folds every adapter into its base weight with peft's own `merge` (the step of peft's
  `merge_and_unload`), puts the base layers back in place (`q_proj.weight` again) and clears `config.lora`:
  the model then saves as a plain checkpoint (`tools/merge_lora.py` does this for an output directory).
- `loading_kwargs(model_args)`: `device_map` and `quantization` ('8bit' / '4bit', bitsandbytes, GPU only) for
  `from_pretrained` (`bnb_config`: LLM.int8, or QLoRA's NF4 with double quantization);
  `prepare_for_kbit_training(model)` is peft's `prepare_model_for_kbit_training` (QLoRA: LoRA on a quantized
  model) without switching on gradient checkpointing (training_args decides that).
"""
from __future__ import annotations

DEFAULT_TARGETS = {'llama': ['q_proj', 'v_proj'], 'mistral': ['q_proj', 'v_proj'], 'mpt': ['Wqkv'],
                   'gpt_neox': ['query_key_value']}
LORA_KEYS = ('r', 'alpha', 'dropout', 'target_modules')
QUANTIZATION_CHOICES = ('8bit', '4bit')


def _peft():
    try:
        import peft
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install 'mllm[lora]'") from e
    return peft


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
    _peft()
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings['r'], lora_alpha=settings['alpha'], lora_dropout=settings['dropout'],
                        target_modules=settings['target_modules'], bias='none')
    return inject_adapter_in_model(config, language_model)


def lora_layers(model) -> list[tuple[str, object]]:
    """[(module name, peft tuner layer)] of `model`, outermost layers only (a layer's own children excluded)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # without peft no model can hold adapters
        return []
    found = []
    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) and not any(name.startswith(f'{outer}.') for outer, _ in found):
            found.append((name, module))
    return found


def merge_lora(model, safe_merge: bool = True):
    """Fold every LoRA adapter of `model` into its base weight, in place, and return `model`.

    Each peft layer merges all its adapters (`LoraLayer.merge`, peft's own arithmetic; bitsandbytes layers
    dequantize and requantize there) and is replaced by its base layer, so the parameter names are the plain
    model's again (`q_proj.weight`, no `base_layer`, no `lora_`). `config.lora` is cleared: saved, the model is a
    plain checkpoint that loads without peft. `safe_merge` checks the merged weights for NaN / inf first.
    """
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"merge_lora: the {type(model).__name__} holds no LoRA adapters (nothing to merge)")
    for name, layer in layers:
        layer.merge(safe_merge=safe_merge, adapter_names=list(getattr(layer, 'lora_A', {})) or None)  # all of them
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    for module in model.modules():  # inject_adapter_in_model leaves its LoraConfig on the injected module
        if isinstance(getattr(module, 'peft_config', None), dict):
            del module.peft_config
    if getattr(model.config, 'lora', None) is not None:
        model.config.lora = None
    return model


def freeze_all_but_lora(module) -> None:
    """Inside `module` only the LoRA adapters train (peft's own rule: parameters named `lora_`)."""
    for name, param in module.named_parameters():
        param.requires_grad_('lora_' in name)


def check_quantization(value) -> None:
    if value not in (None, *QUANTIZATION_CHOICES):
        from ..config import ConfigError

        raise ConfigError(f"model_args.quantization must be '8bit' or '4bit', got {value!r}")


def bnb_config(quantization: str, compute_dtype=None, skip_modules=None):
    """The bitsandbytes config of `quantization`: '8bit' (LLM.int8) or '4bit' (QLoRA's NF4 with double
    quantization, computing in `compute_dtype`). `skip_modules`: module names (prefixes, see transformers'
    `llm_int8_skip_modules`) that stay unquantized; None: transformers' default (the output head)."""
    from transformers import BitsAndBytesConfig

    check_quantization(quantization)
    skip = list(skip_modules) if skip_modules is not None else None
    if quantization == '8bit':
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip)


def loading_kwargs(model_args, compute_dtype=None, skip_modules=None) -> dict:
    """`device_map` (e.g. 'auto', or 'cpu') and `quantization` ('8bit' / '4bit' through bitsandbytes, a CUDA
    GPU; see `bnb_config`) as `from_pretrained` keyword arguments; quantization without bitsandbytes is an
    ImportError naming it."""
    kwargs = {}
    if model_args.get('device_map') is not None:
        kwargs['device_map'] = model_args['device_map']
    quantization = model_args.get('quantization')
    check_quantization(quantization)
    if quantization is not None:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ImportError(f"model_args.quantization={quantization!r} needs bitsandbytes (a CUDA GPU): "
                              f"pip install bitsandbytes") from None
        kwargs['quantization_config'] = bnb_config(quantization, compute_dtype, skip_modules)
        kwargs.setdefault('device_map', 'auto')
    return kwargs


def prepare_for_kbit_training(model):
    """QLoRA's preparation of a quantized model (peft): every parameter frozen, the non-quantized fp16 / bf16 ones
    cast to fp32. Gradient checkpointing is left to `training_args.gradient_checkpointing`."""
    peft = _peft()
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
