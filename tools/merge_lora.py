"""Fold the LoRA adapters of a LoRA-trained mllm output directory into its weights: a plain checkpoint.

    python tools/merge_lora.py TRAINED_DIR OUT_DIR [--dtype bfloat16]

TRAINED_DIR is what `finetune.py` wrote for a run with `model_args.lora` (LLaVA, OpenFlamingo or Otter family):
config.json with model_type `mllm_llava` / `mllm_openflamingo` / `mllm_otter` and its `lora` settings, the
weights (adapters beside the base weights), tokenizer and image processor. The model loads through the family's
builder (`mllm.models.build_model`), every adapter is merged by peft (`mllm.models.lora.merge_lora`), and OUT_DIR
gets the merged model (no `lora_` / `base_layer` keys, no `lora` in its config), tokenizer and image processor:
`model_args.model_name_or_path=OUT_DIR` loads it without peft, and with `model_args.quantization` too.
`--dtype` (default: the dtype config.json records, else float32) is the dtype the merge runs and saves in.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

logger = logging.getLogger('merge_lora')

FAMILY_OF_MODEL_TYPE = {'mllm_llava': 'llava', 'mllm_openflamingo': 'openflamingo', 'mllm_otter': 'otter'}


class MergeError(ValueError):
    """TRAINED_DIR / OUT_DIR cannot be merged / written as asked."""


def read_lora_config(trained_dir: str) -> dict:
    """config.json of a LoRA-trained mllm directory; a MergeError naming the directory otherwise."""
    path = os.path.join(trained_dir, 'config.json')
    if not os.path.isfile(path):
        raise MergeError(f"{trained_dir}: no config.json; expected an mllm output directory (save_pretrained)")
    with open(path) as f:
        config = json.load(f)
    model_type = config.get('model_type')
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise MergeError(f"{trained_dir}: config.json has model_type {model_type!r}; merge_lora merges "
                         f"{', '.join(FAMILY_OF_MODEL_TYPE)} directories")
    if not config.get('lora'):
        raise MergeError(f"{trained_dir} has no LoRA settings (config.json 'lora' is empty): it was not trained "
                         f"with model_args.lora, so it is a plain checkpoint already and there is nothing to merge")
    if config.get('quantization_config'):
        raise MergeError(f"{trained_dir} holds bitsandbytes-quantized weights (config.json 'quantization_config'); "
                         f"merge the adapters into an unquantized copy of the base model instead")
    return config


def merge(trained_dir: str, out_dir: str, dtype: str | None = None) -> str:
    """Write the merged model of `trained_dir` to `out_dir`; return `out_dir`."""
    config = read_lora_config(trained_dir)
    if os.path.realpath(out_dir) == os.path.realpath(trained_dir):
        raise MergeError(f"{out_dir}: write the merged model to another directory than the one it is read from")
    from mmengine.config import ConfigDict

    from mllm.models import build_model
    from mllm.models.lora import merge_lora

    dtype = dtype or config.get('dtype') or config.get('torch_dtype') or 'float32'
    family = FAMILY_OF_MODEL_TYPE[config['model_type']]
    model, model_family = build_model(ConfigDict(type=family, model_name_or_path=trained_dir, torch_dtype=dtype))
    n = sum(1 for name, _ in model.named_parameters() if 'lora_' in name)
    merge_lora(model)
    model.save_pretrained(out_dir)
    model_family.tokenizer.save_pretrained(out_dir)
    model_family.save_pretrained(out_dir)  # the image processor
    logger.info('merged %d LoRA tensors (%s) of %s into %s (%s)', n, config['lora'], trained_dir, out_dir, dtype)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('trained_dir', help='a LoRA-trained mllm output directory')
    parser.add_argument('out_dir', help='where the merged model, tokenizer and image processor go')
    parser.add_argument('--dtype', choices=('float32', 'bfloat16', 'float16', 'float64'),
                        help='dtype of the merge and of the saved weights (default: the one config.json records)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        merge(args.trained_dir, args.out_dir, args.dtype)
    except MergeError as e:
        parser.exit(2, f"merge_lora: error: {e}\n")
    return 0


if __name__ == '__main__':
    sys.exit(main())
