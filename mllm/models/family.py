"""`ModelFamily`: everything that differs between model families, in one object per built model.

`build_model(model_args)` returns `(model, family)`. The data builder, the trainer and `finetune.py`
ask the family, never which family they run:
- `tokenizer`, `image_processor`, `box_formatter` (writes boxes into text; metrics parse with it);
- `render(raw_dataset, mode, name, **conv_args)`: the model-ready dataset of a raw dataset of
  canonical items (template, image-token expansion, which tokens carry loss);
- `collator(mode, **kwargs)`: batches for training ('train', right padding) or generation ('eval');
- `stop_token_ids(conv_args)`: the ids generation stops at (the template's end of turn, checked);
- `trainable_table(model)` / `log_trainable(model)`: the freezing plan, as applied, per module;
- `save_pretrained(output_dir)`: the processors saved beside the model weights.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict

from ..dataset.process_function.conv_template import get_conv_template
from ..dataset.single_image_conversation import SingleImageConvDataset
from ..engine.collator import Collator
from .sharding import numel

logger = logging.getLogger(__name__)


class ModelFamily(ABC):
    """Base class; a family sets `name` and implements `render` (and overrides what else differs)."""

    name = 'base'
    default_conv_template = 'vicuna_v1.1'

    def __init__(self, tokenizer, image_processor, box_formatter):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.box_formatter = box_formatter

    # -- data ----------------------------------------------------------------------------------
    @abstractmethod
    def render(self, raw_dataset, mode: str, name: str | None = None, **conv_args):
        """The model-ready dataset of `raw_dataset` (canonical items) for this family."""

    def collator(self, mode: str, **kwargs) -> Collator:
        """Right padding for training batches, left padding for generation batches."""
        if mode == 'train':
            return Collator(self.tokenizer.pad_token_id, 'right', **kwargs)
        if mode == 'eval':
            return Collator(self.tokenizer.pad_token_id, 'left', **kwargs)
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")

    def stop_token_ids(self, conv_args: dict | None = None) -> list[int]:
        conv_args = conv_args or {}
        template = get_conv_template(conv_args.get('conv_template', self.default_conv_template),
                                     **(conv_args.get('conv_overrides') or {}))
        return template.resolve_stop_token_ids(self.tokenizer)

    # -- model ---------------------------------------------------------------------------------
    @staticmethod
    def trainable_table(model, depth: int = 2) -> list[tuple[str, int, int]]:
        """(module prefix, trainable parameters, all parameters) per module `depth` levels deep, in order."""
        rows: OrderedDict[str, list[int]] = OrderedDict()
        for name, param in model.named_parameters():
            prefix = '.'.join(name.split('.')[:depth])
            row = rows.setdefault(prefix, [0, 0])
            row[0] += numel(param) if param.requires_grad else 0
            row[1] += numel(param)
        return [(prefix, trainable, total) for prefix, (trainable, total) in rows.items()]

    def log_trainable(self, model) -> None:
        rows = self.trainable_table(model)
        width = max(len(r[0]) for r in rows) if rows else 10
        lines = [f"{'module':<{width}}  {'trainable':>12}  {'total':>12}"]
        lines += [f"{prefix:<{width}}  {trainable:>12,}  {total:>12,}" for prefix, trainable, total in rows]
        trainable, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
        lines.append(f"{'all':<{width}}  {trainable:>12,}  {total:>12,}  ({100 * trainable / max(total, 1):.2f} %)")
        logger.info('%s parameters:\n%s', self.name, '\n'.join(lines))

    def save_pretrained(self, output_dir: str) -> None:
        """Processors beside the weights (the trainer saves the model and, as processing_class, the tokenizer)."""
        if self.image_processor is not None:
            self.image_processor.save_pretrained(output_dir)


class LlavaFamily(ModelFamily):
    """LLaVA-style models (LLaVA, Shikra-style grounding, LCL): each `<image>` becomes
    `num_image_tokens` image tokens whose embeddings the model replaces by projected vision features;
    rendering by `SingleImageConvDataset`."""

    name = 'llava'

    def __init__(self, tokenizer, image_processor, box_formatter, num_image_tokens: int, image_token: str,
                 image_wrap: tuple[str, ...] = ()):
        super().__init__(tokenizer, image_processor, box_formatter)
        self.num_image_tokens = num_image_tokens
        self.image_token = image_token
        self.image_wrap = tuple(image_wrap)  # e.g. ('<im_start>', '<im_end>') around every image (Shikra, LCL)

    @property
    def preprocessor(self) -> dict:
        """What `SingleImageConvDataset` reads (its `preprocessor` argument)."""
        return {'text': self.tokenizer, 'image': self.image_processor, 'target': self.box_formatter,
                'num_image_tokens': self.num_image_tokens, 'image_token': self.image_token,
                'image_wrap': self.image_wrap}

    def render(self, raw_dataset, mode: str, name: str | None = None, **conv_args):
        return SingleImageConvDataset(raw_dataset, self.preprocessor, mode=mode, name=name, **conv_args)
