"""Referring expression comprehension (REC): find the box of an expression.

Reads the Shikra-style JSONL written by tools/prepare_data/refcoco.py and visual_genome.py (and
the JSONL shipped with Shikra, e.g. REC_ref3_train.jsonl, GC_genome196_train.jsonl): one object per
line with `img_path` (relative to `image_folder`), `expression` and `bbox` (pixel xyxy of the
original image). Other fields (`height`, `width`, ids, `dataset_name`) are optional; when `height`
and `width` are there the box is checked against them at load. The metric parses exactly one box
from each prediction: no box, or several, is a parse failure and counts as wrong.
"""
from __future__ import annotations

from fractions import Fraction
from numbers import Real

from ...metrics.grounding import box_iou, exact, resolve_box_formatter
from ..root import BOXES_PLACEHOLDER, DATASETS, EXPR_PLACEHOLDER, IMAGE_PLACEHOLDER, METRICS
from ..utils.io import DataFileError
from .base import AnnotationDataset

# Ids the converters write; meta() passes the ones a record has to the predictions file.
RECORD_ID_FIELDS = ('image_id', 'ann_id', 'ref_id', 'sent_id', 'region_id', 'dataset_name', 'split')

# Public annotations carry sub-pixel rounding past the border (same tolerance as validate_item).
BOX_TOLERANCE = 1.0


def check_box_record(record: dict, filename: str) -> None:
    """Raise DataFileError naming file:line unless `bbox` is a pixel xyxy box (inside the image if sized)."""
    where = record.get('__source__', filename)
    bbox = record['bbox']
    if (not isinstance(bbox, list | tuple) or len(bbox) != 4
            or not all(isinstance(v, Real) and not isinstance(v, bool) for v in bbox)):
        raise DataFileError(f"{where}: bbox must be 4 numbers [x0, y0, x1, y1] in pixels, got {bbox!r}")
    x0, y0, x1, y1 = bbox
    if x1 < x0 or y1 < y0:
        raise DataFileError(f"{where}: bbox {list(bbox)} has x1<x0 or y1<y0 (expected pixel xyxy, not xywh)")
    width, height = record.get('width'), record.get('height')
    if isinstance(width, Real) and isinstance(height, Real):
        t = BOX_TOLERANCE
        if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
            raise DataFileError(f"{where}: bbox {list(bbox)} lies outside the {width}x{height} image")


class BoxRecordDataset(AnnotationDataset):
    """Shared loading of one-box records (`img_path`, `expression`, `bbox`): REC, REG and GC."""

    required_fields = ('img_path', 'expression', 'bbox')

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str | None = None,
                 seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)
        for record in self.records:
            check_box_record(record, filename)
            if not isinstance(record['expression'], str):
                raise DataFileError(f"{record['__source__']}: expression must be a string, "
                                    f"got {record['expression']!r}")

    def meta(self, index: int) -> dict:
        record = self.records[index]
        meta = {k: record[k] for k in RECORD_ID_FIELDS if k in record}
        meta.update(expression=record['expression'], bbox=[float(v) for v in record['bbox']])
        return meta


@DATASETS.register_module()
class RECDataset(BoxRecordDataset):
    """Question: the expression; answer: its box (`Answer: <boxes> .` by default)."""

    template_placeholders = (IMAGE_PLACEHOLDER, EXPR_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'REC.json',
                 seed: int = 0, answer: str = f'Answer: {BOXES_PLACEHOLDER} .'):
        if answer.count(BOXES_PLACEHOLDER) != 1:
            raise ValueError(f"answer {answer!r} must contain {BOXES_PLACEHOLDER} exactly once")
        super().__init__(filename, image_folder, template_file, seed)
        self.answer = answer

    def build_item(self, index: int, record: dict) -> dict:
        return {
            'image': self.get_image(record),
            'target': {'boxes': [[float(v) for v in record['bbox']]]},
            'conversations': [
                {'from': 'human', 'value': self.question(index, {EXPR_PLACEHOLDER: record['expression']})},
                {'from': 'gpt', 'value': self.answer, 'boxes_seq': [[0]]},
            ],
        }


@METRICS.register_module()
class RECComputeMetrics:
    """Acc@IoU>threshold, mean IoU and parse failures over (prediction, reference) texts.

    Each text must hold exactly one box, parsed with the model's formatter: `box_formatter` (a built
    formatter object; the builder passes the model's) or `formatter` (a config dict), not both; the
    default is `PlainBoxFormatter()`. IoU is exact on the decimal values the text wrote
    (mllm.metrics.grounding), so an IoU of exactly `iou_threshold` is a miss ("IoU > 0.5").
    Boxes are compared in the normalised coordinates of the padded square image; padding and
    uniform scaling keep IoU unchanged, so this equals the IoU in original pixels.
    """

    def __init__(self, formatter: dict | None = None, iou_threshold: float = 0.5, box_formatter=None):
        self.formatter = resolve_box_formatter(formatter, box_formatter, 'RECComputeMetrics')
        self.iou_threshold = iou_threshold
        self._threshold = exact(iou_threshold)

    def _single_box(self, text: str):
        groups = self.formatter.extract(text)
        if len(groups) == 1 and len(groups[0]) == 1:
            return groups[0][0]
        return None

    def __call__(self, predictions: list[str], references: list[str], metas=None):
        # metas (dataset.meta(i)) are not needed: the reference text holds the target box.
        verdicts, correct, iou_sum, failures = [], 0, Fraction(0), 0
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
            ok = iou > self._threshold
            correct += ok
            iou_sum += iou
            verdicts.append({'pred_boxes': [[box]], 'target_boxes': [[target]], 'parse_failed': False,
                             'iou': round(float(iou), 6), 'correct': ok})
        n = len(verdicts)
        metrics = {'accuracy': correct / n if n else 0.0, 'miou': float(iou_sum / n) if n else 0.0,
                   'parse_failures': failures, 'total': n}
        return metrics, verdicts
