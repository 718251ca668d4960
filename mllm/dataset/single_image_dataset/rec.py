"""Referring expression comprehension (REC): find the box of an expression.

Reads the Shikra-style JSONL: one object per line with `img_path` (relative to `image_folder`),
`expression` and `bbox` (pixel xyxy of the original image). The metric parses exactly one box
from each prediction: no box, or several, is a parse failure and counts as wrong.
"""
from __future__ import annotations

import os

from torch.utils.data import Dataset

from ..process_function.box_formatter import PlainBoxFormatter
from ..root import BOXES_PLACEHOLDER, BOXES_PROCESSOR, DATASETS, EXPR_PLACEHOLDER, IMAGE_PLACEHOLDER, METRICS
from ..utils.io import DataFileError, read_image, read_jsonl
from ..utils.question_templates import QuestionTemplates


@DATASETS.register_module()
class RECDataset(Dataset):
    def __init__(self, filename: str, image_folder: str, template_file: str = 'REC.json', seed: int = 0,
                 answer: str = f'Answer: {BOXES_PLACEHOLDER} .'):
        if not os.path.isdir(image_folder):
            raise DataFileError(f"image_folder not found: {image_folder} (set it in the dataset config)")
        self.filename, self.image_folder = filename, image_folder
        self.records = read_jsonl(filename)
        for record in self.records:
            missing = [k for k in ('img_path', 'expression', 'bbox') if k not in record]
            if missing:
                raise DataFileError(f"{record['__source__']}: missing field(s) {missing}")
        self.templates = QuestionTemplates(template_file, required=(IMAGE_PLACEHOLDER, EXPR_PLACEHOLDER), seed=seed)
        self.answer = answer

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        record = self.records[index]
        source = record['__source__']
        try:
            image = read_image(os.path.join(self.image_folder, record['img_path']))
        except DataFileError as e:
            raise DataFileError(f"{source}: {e}") from None
        question = self.templates.get(index).replace(EXPR_PLACEHOLDER, record['expression'])
        return {
            'image': image,
            'source': source,
            'target': {'boxes': [list(map(float, record['bbox']))]},
            'conversations': [
                {'from': 'human', 'value': question},
                {'from': 'gpt', 'value': self.answer, 'boxes_seq': [[0]]},
            ],
        }


def box_iou(a, b) -> float:
    ix0, iy0, ix1, iy1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix1 - ix0, 0.0) * max(iy1 - iy0, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@METRICS.register_module()
class RECComputeMetrics:
    """Acc@IoU>threshold, mean IoU and parse failures over (prediction, reference) texts."""

    def __init__(self, formatter: dict | None = None, iou_threshold: float = 0.5):
        self.formatter = BOXES_PROCESSOR.build(formatter) if formatter else PlainBoxFormatter()
        self.iou_threshold = iou_threshold

    def _single_box(self, text: str):
        groups = self.formatter.extract(text)
        if len(groups) == 1 and len(groups[0]) == 1:
            return groups[0][0]
        return None

    def __call__(self, predictions: list[str], references: list[str]):
        verdicts, correct, iou_sum, failures = [], 0, 0.0, 0
        for pred, ref in zip(predictions, references, strict=True):
            target = self._single_box(ref)
            if target is None:
                raise ValueError(f"reference {ref!r} does not hold exactly one box")
            box = self._single_box(pred)
            if box is None:
                failures += 1
                verdicts.append({'pred_boxes': self.formatter.extract(pred), 'target_boxes': [[target]],
                                 'parse_failed': True, 'iou': 0.0, 'correct': False})
                continue
            iou = box_iou(box, target)
            ok = iou > self.iou_threshold
            correct += ok
            iou_sum += iou
            verdicts.append({'pred_boxes': [[box]], 'target_boxes': [[target]], 'parse_failed': False,
                             'iou': round(iou, 6), 'correct': ok})
        n = len(verdicts)
        metrics = {'accuracy': correct / n if n else 0.0, 'miou': iou_sum / n if n else 0.0,
                   'parse_failures': failures, 'total': n}
        return metrics, verdicts
