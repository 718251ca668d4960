"""Region-to-text tasks on the same one-box JSONL as REC (`img_path`, `expression`, `bbox`).

REG ("ref_reverse", RefCOCO/+/g): the box is in the question, the referring expression is the
answer. GC (grounded captioning, Visual Genome regions): the box is in the question, the region
description is the answer. Templates mark the box with `<objs>` (as Shikra's REG.json / GC.json
do, so those files load too); it becomes `<boxes>` filled by `boxes_seq=[[0]]` of the human turn.

`meta(i)['captions']` lists every expression of the sample's referent (records sharing `ref_id`,
one per sentence in the RefCOCO files), so a caption metric scores against all of them.
"""
from __future__ import annotations

from collections import defaultdict

from ..root import BOXES_PLACEHOLDER, DATASETS, IMAGE_PLACEHOLDER
from .rec import BoxRecordDataset

OBJS_PLACEHOLDER = '<objs>'


@DATASETS.register_module()
class REGDataset(BoxRecordDataset):
    """Question: a template with the region's box; answer: the record's expression, verbatim."""

    template_placeholders = (IMAGE_PLACEHOLDER, OBJS_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'REG.json',
                 seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)
        for k, template in enumerate(self.templates.templates):
            # One box per record: a template asking about two regions would have nothing to fill.
            if template.count(OBJS_PLACEHOLDER) != 1 or BOXES_PLACEHOLDER in template:
                raise ValueError(f"{self.templates.path}: template {k} {template!r} must contain "
                                 f"{OBJS_PLACEHOLDER} exactly once and no {BOXES_PLACEHOLDER}")
        self.ref_expressions = defaultdict(list)
        for record in self.records:
            if 'ref_id' in record:
                self.ref_expressions[record['ref_id']].append(record['expression'])

    def meta(self, index: int) -> dict:
        meta = super().meta(index)
        meta['captions'] = list(self.ref_expressions.get(meta.get('ref_id'), [])) or [meta['expression']]
        return meta

    def build_item(self, index: int, record: dict) -> dict:
        question = self.question(index, {OBJS_PLACEHOLDER: BOXES_PLACEHOLDER})
        return {
            'image': self.get_image(record),
            'target': {'boxes': [[float(v) for v in record['bbox']]], 'points': []},
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': [[0]], 'points_seq': None},
                {'from': 'gpt', 'value': record['expression'], 'boxes_seq': None, 'points_seq': None},
            ],
        }


@DATASETS.register_module()
class GCDataset(REGDataset):
    """Grounded caption of a Visual Genome region: same item layout as REG, GC.json phrasings."""

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'GC.json',
                 seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)
