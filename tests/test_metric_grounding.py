"""Grounding metrics (REC, Visual7W pointing): exact IoU ties on the decimal grid, the injected box formatter.

Expected verdicts come from integer arithmetic in thousandths written here: with areas A, B and
intersection I of two boxes, IoU = I / (A + B - I) > 1/2  <=>  3 I > A + B, and a tie is 3 I == A + B.
"""
import random
import re

import pytest

from mllm.dataset.process_function.box_formatter import BoxFormatter
from mllm.dataset.root import METRICS
from mllm.dataset.single_image_dataset.rec import RECComputeMetrics
from mllm.metrics.grounding import box_iou, exact
from mllm.metrics.point import PointingComputeMetrics

N_TIES = 3000


def text(box) -> str:
    """A box in thousandths written as the plain formatter writes it, without going through floats."""
    return '[' + ','.join(f'{v // 1000}.{v % 1000:03d}' for v in box) + ']'


def int_iou_terms(a, b):
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return inter, (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])


def tie_cases(seed: int, n: int):
    """(pred, ref) integer boxes whose IoU is exactly 1/2, from three hand-derived families."""
    rng, cases = random.Random(seed), []
    while len(cases) < n:
        family, h = rng.randrange(3), rng.randint(1, 500)
        if family == 0:    # pred is half of ref (I = A = wh/2, B = wh: 3I = 3wh/2 = A + B)
            w = 2 * rng.randint(1, 250)
            x0 = rng.randint(0, 1000 - w)
            ref = (x0, 0, x0 + w, h)
            pred = (x0, 0, x0 + w // 2, h) if rng.random() < 0.5 else (x0 + w // 2, 0, x0 + w, h)
        elif family == 1:  # pred doubles ref (I = B = wh, A = 2wh: 3wh = A + B)
            w = rng.randint(1, 250)
            x0 = rng.randint(0, 1000 - 2 * w)
            ref, pred = (x0, 0, x0 + w, h), (x0, 0, x0 + 2 * w, h)
        else:              # equal boxes shifted by a third of their width (I = 2wh/3, A = B = wh)
            w = 3 * rng.randint(1, 150)
            x0 = rng.randint(0, 1000 - w - w // 3)
            ref, pred = (x0, 0, x0 + w, h), (x0 + w // 3, 0, x0 + w // 3 + w, h)
        y0 = rng.randint(0, 1000 - h)
        ref, pred = [(b[0], b[1] + y0, b[2], b[3] + y0) for b in (ref, pred)]
        if rng.random() < 0.5:  # the same along y
            ref, pred = [(b[1], b[0], b[3], b[2]) for b in (ref, pred)]
        if rng.random() < 0.5:
            ref, pred = pred, ref
        cases.append((pred, ref))
    return cases


def near_ties(cases, seed: int):
    """Each tie with one coordinate of the prediction moved by one thousandth (either way)."""
    rng, out = random.Random(seed), []
    for pred, ref in cases:
        k, step = rng.randrange(4), rng.choice((-1, 1))
        moved = list(pred)
        moved[k] += step
        if 0 <= moved[k] <= 1000 and moved[0] < moved[2] and moved[1] < moved[3]:
            out.append((tuple(moved), ref))
    return out


def test_constructed_cases_are_exact_ties():
    cases = tie_cases(0, N_TIES)
    for pred, ref in cases:
        inter, a, b = int_iou_terms(pred, ref)
        assert 3 * inter == a + b and all(0 <= v <= 1000 for v in pred + ref)
    assert all(box_iou([v / 1000 for v in p], [v / 1000 for v in r]) == exact(0.5) for p, r in cases[:200])


@pytest.mark.parametrize('metric', [RECComputeMetrics(), PointingComputeMetrics()], ids=['rec', 'pointing'])
def test_exact_ties_are_misses_and_near_ties_fall_on_their_side(metric):
    cases = tie_cases(1, N_TIES)
    scores, verdicts = metric([text(p) for p, _ in cases], [text(r) for _, r in cases])
    assert scores['accuracy'] == 0.0 and scores['parse_failures'] == 0
    assert all(v['iou'] == 0.5 for v in verdicts)
    near = near_ties(cases, 2)
    expected = []
    for pred, ref in near:
        inter, a, b = int_iou_terms(pred, ref)
        assert 3 * inter != a + b  # one thousandth off is never a tie here
        expected.append(3 * inter > a + b)
    assert 0.1 * len(near) < sum(expected) < 0.9 * len(near)  # both sides are well represented
    _, verdicts = metric([text(p) for p, _ in near], [text(r) for _, r in near])
    assert [v['correct'] for v in verdicts] == expected


class AngleBoxFormatter(BoxFormatter):
    """A model's own grammar: boxes `<x0 y0 x1 y1>`, points `<x y>`; PlainBoxFormatter reads neither."""

    _BOX = re.compile(r'<(\d\.\d+) (\d\.\d+) (\d\.\d+) (\d\.\d+)>')
    _POINT = re.compile(r'<(\d\.\d+) (\d\.\d+)>')

    def format_boxes(self, boxes):
        return ''.join('<' + ' '.join(f'{v:.3f}' for v in box) + '>' for box in boxes)

    def format_points(self, points):
        return ''.join('<' + ' '.join(f'{v:.3f}' for v in point) + '>' for point in points)

    def extract(self, text):
        return [[[float(v) for v in m.groups()]] for m in self._BOX.finditer(text)]

    def extract_points(self, text):
        return [[[float(v) for v in m.groups()]] for m in self._POINT.finditer(text)]


def test_injected_formatter_scores_pointing():
    formatter = AngleBoxFormatter()
    metric = METRICS.build(dict(type='PointingComputeMetrics', box_formatter=formatter))
    assert metric.formatter is formatter
    # Point answers: the reference holds the centre, the GT box comes from metas (V7WPointingDataset.meta).
    preds = ['The answer is <0.250 0.250>.',              # inside the GT box
             'The answer is <0.750 0.100>.',              # outside
             'The answer is <0.000 0.000 0.500 0.375>.',  # a box: IoU 0.375/0.5 = 0.75
             'The answer is <0.000 0.000 0.500 0.250>.',  # IoU exactly 1/2: a miss
             'The answer is [0.250,0.250].']              # another grammar: a parse failure
    refs = ['The answer is <0.250 0.250>.'] * 5
    metas = [{'gt_box': [0.0, 0.0, 0.5, 0.5]}] * 5
    scores, verdicts = metric(preds, refs, metas)
    assert [v['correct'] for v in verdicts] == [True, False, True, False, False]
    assert scores == {'accuracy': 0.4, 'parse_failures': 1, 'total': 5, 'box_predictions': 2,
                      'point_predictions': 2, 'meta_mismatches': 0}
    # The default formatter finds no box or point in this grammar: every prediction is a parse failure.
    scores, _ = PointingComputeMetrics()(preds[:4], refs[:4], metas[:4])
    assert scores['parse_failures'] == 4 and scores['accuracy'] == 0.0
    with pytest.raises(ValueError, match='not both'):
        PointingComputeMetrics(formatter=dict(type='PlainBoxFormatter'), box_formatter=formatter)


def test_pointing_needs_a_formatter_that_reads_points():
    class BoxesOnly:
        def extract(self, text):
            return []

    RECComputeMetrics(box_formatter=BoxesOnly())  # REC reads boxes only
    with pytest.raises(TypeError, match='has no extract_points'):
        PointingComputeMetrics(box_formatter=BoxesOnly())
