"""`build_model(model_args)`: pick the model family named by `model_args.type`.

Returns (model, preprocessor); the preprocessor dict carries what the data side needs to render
samples for this model: tokenizer (`text`), image processor (`image`), box formatter (`target`),
the number of image tokens one `<image>` expands to, and the image token string.
"""
from __future__ import annotations

from ..dataset.process_function import box_formatter  # noqa: F401  (registers the formatters)
from ..dataset.root import BOXES_PROCESSOR
from .llava import build_llava

FAMILIES = {'llava': build_llava}


def build_model(model_args):
    family = model_args.get('type', 'llava')
    if family not in FAMILIES:
        raise ValueError(f"model_args.type={family!r} is unknown; known families: {sorted(FAMILIES)}")
    model, preprocessor = FAMILIES[family](model_args)
    target_cfg = (model_args.get('target_processor') or {}).get('boxes') or {'type': 'PlainBoxFormatter'}
    preprocessor['target'] = BOXES_PROCESSOR.build(dict(target_cfg))
    return model, preprocessor
