"""POPE (AoiDragon/POPE): "Is there a <object> in the image?" yes/no probes of object hallucination.

Reads the official files coco_pope_{random,popular,adversarial}.json as released: JSON lines with
`question_id`, `image` (a COCO val2014 file name, e.g. COCO_val2014_000000310196.jpg), `text`
(the question) and `label` ('yes' / 'no'); newer copies also carry `image_id`. POPE is a test set
only. The reference answer is "The answer is yes." by default (`answer` sets another wording,
which must contain `{label}`); `meta(index)` gives the label to POPEComputeMetrics.
"""
from __future__ import annotations

from ..root import DATASETS, IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset

LABELS = ('yes', 'no')


@DATASETS.register_module()
class POPEDataset(AnnotationDataset):
    """One item per POPE question; images from `image_folder` (the COCO val2014 folder)."""

    required_fields = ('question_id', 'image', 'text', 'label')
    records_in_memory = True  # labels are normalised in place at load
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str, template_file: str = 'POPE.json',
                 answer: str = 'The answer is {label}.', seed: int = 0):
        if '{label}' not in answer:
            raise ValueError(f"POPEDataset: answer {answer!r} must contain '{{label}}'")
        self.answer = answer
        super().__init__(filename, image_folder, template_file=template_file, seed=seed)
        for record in self.records:
            label = str(record['label']).strip().lower()
            if label not in LABELS:
                raise DataFileError(f"{record['__source__']}: label {record['label']!r} is not 'yes' or 'no'")
            record['label'] = label

    def build_item(self, index: int, record: dict) -> dict:
        question = self.question(index, {QUESTION_PLACEHOLDER: str(record['text']).strip()})
        return {
            'image': self.get_image(record, key='image'),
            'target': {'boxes': [], 'points': []},
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': self.answer.format(label=record['label']), 'boxes_seq': None,
                 'points_seq': None},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'question_id': record['question_id'], 'label': record['label']}
