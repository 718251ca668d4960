"""Point QA metrics: short-answer accuracy (PointQA Local / LookTwice) and pointing accuracy (Visual7W).

`PointingComputeMetrics` parses each prediction as exactly one box or one point with the model's formatter
(`box_formatter`, the built object the builder passes, or a `formatter` config dict, not both; default
`PlainBoxFormatter()`) and its own `extract` / `extract_points`; no value, or more than one (several boxes,
a box and a point, ...) is a parse failure, counted and scored wrong. A predicted point is correct when it
lies inside the GT box (borders included); a predicted box is correct when its IoU with the GT box is
> `iou_threshold` (0.5, strictly greater, as in the REC metric). Both tests are exact on the decimal values
the text wrote (mllm.metrics.grounding): an IoU of exactly 1/2 is a miss, whatever float rounding says.

Where the GT box comes from: the reference text when it holds exactly one box (box answers; the
reference went through the same transform and formatter as the model's text, so the spaces agree);
otherwise `metas[i]['gt_box']` from `V7WPointingDataset.meta(i)` (point answers, whose reference text
holds only the centre). Meta boxes are normalised after Expand2square by default (the dataset's
`meta_space`); when both sources exist and differ by more than `meta_tolerance`, the sample is counted
in `meta_mismatches`, which flags a `meta_space` that does not match the model's transform.
"""
from __future__ import annotations

from ..dataset.root import METRICS
from .exact_match import ExactMatchMetric
from .grounding import box_iou, exact, point_in_box, resolve_box_formatter

__all__ = ['PointQAComputeMetrics', 'PointingComputeMetrics', 'box_iou', 'point_in_box']


@METRICS.register_module()
class PointQAComputeMetrics(ExactMatchMetric):
    """PointQA accuracy: exact match of the short answer after extraction ("The answer is X.")."""


@METRICS.register_module()
class PointingComputeMetrics:
    """Visual7W pointing accuracy over box or point predictions (see the module docstring)."""

    def __init__(self, formatter: dict | None = None, iou_threshold: float = 0.5, meta_tolerance: float = 2e-3,
                 box_formatter=None):
        self.formatter = resolve_box_formatter(formatter, box_formatter, 'PointingComputeMetrics',
                                               needs=('extract', 'extract_points'))
        self.iou_threshold = iou_threshold
        self._threshold = exact(iou_threshold)
        self.meta_tolerance = meta_tolerance

    def parse(self, text: str) -> tuple[str | None, list[float] | None, int]:
        """(kind 'box' / 'point' / None, coordinates, number of values found) of one prediction."""
        boxes = [b for group in self.formatter.extract(text) for b in group]
        points = [p for group in self.formatter.extract_points(text) for p in group]
        found = len(boxes) + len(points)
        if found != 1:
            return None, None, found
        return ('box', boxes[0], 1) if boxes else ('point', points[0], 1)

    def target_box(self, reference: str, meta: dict | None, index: int) -> tuple[list[float], bool]:
        """(GT box, whether the meta box disagrees with the reference box)."""
        ref_boxes = [b for group in self.formatter.extract(reference) for b in group]
        meta_box = (meta or {}).get('gt_box')
        if len(ref_boxes) == 1:
            mismatch = meta_box is not None and max(abs(a - b) for a, b in zip(ref_boxes[0], meta_box,
                                                                              strict=True)) > self.meta_tolerance
            return ref_boxes[0], mismatch
        if meta_box is not None:
            return list(meta_box), False
        raise ValueError(f"sample {index}: reference {reference!r} holds {len(ref_boxes)} boxes and no "
                         "metas[i]['gt_box'] was given; point answers need the dataset's meta(i) (V7WPointingDataset)")

    def __call__(self, predictions, references, metas=None):
        if metas is not None and len(metas) != len(references):
            raise ValueError(f"{len(metas)} metas for {len(references)} references")
        verdicts, correct, failures, mismatches = [], 0, 0, 0
        kinds = {'box': 0, 'point': 0}
        for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
            target, mismatch = self.target_box(ref, metas[i] if metas is not None else None, i)
            mismatches += mismatch
            kind, value, found = self.parse(pred)
            verdict = {'pred_kind': kind, 'pred_value': value, 'num_parsed': found, 'target_box': target,
                       'parse_failed': kind is None, 'iou': None, 'correct': False}
            if kind is None:
                failures += 1
            elif kind == 'box':
                iou = box_iou(value, target)
                verdict.update(iou=round(float(iou), 6), correct=iou > self._threshold)
            else:
                verdict['correct'] = point_in_box(value, target)
            if kind is not None:
                kinds[kind] += 1
            correct += verdict['correct']
            verdicts.append(verdict)
        n = len(verdicts)
        scores = {'accuracy': correct / n if n else 0.0, 'parse_failures': failures, 'total': n,
                  'box_predictions': kinds['box'], 'point_predictions': kinds['point'],
                  'meta_mismatches': mismatches}
        return scores, verdicts
