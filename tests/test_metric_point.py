"""PointQA short-answer accuracy and Visual7W pointing accuracy on crafted predictions."""
import pytest

from mllm.dataset.root import METRICS
from mllm.metrics.point import PointingComputeMetrics, PointQAComputeMetrics, box_iou, point_in_box

GT = 'The answer is [0.000,0.000,0.500,0.500].'  # exact binary fractions: IoU values below are exact


def score(preds, refs=None, metas=None, **kwargs):
    refs = refs or [GT] * len(preds)
    return PointingComputeMetrics(**kwargs)(preds, refs, metas)


def test_registered():
    assert {'PointQAComputeMetrics', 'PointingComputeMetrics'} <= set(METRICS.module_dict)


def test_point_inside_outside_and_on_the_border():
    scores, verdicts = score(['The answer is [0.250,0.250].', 'The answer is [0.750,0.100].',
                              'The answer is [0.500,0.500].', '[0.500,0.501]'])
    assert [v['correct'] for v in verdicts] == [True, False, True, False]
    assert verdicts[0] == {'pred_kind': 'point', 'pred_value': [0.25, 0.25], 'num_parsed': 1,
                           'target_box': [0.0, 0.0, 0.5, 0.5], 'parse_failed': False, 'iou': None, 'correct': True}
    assert scores == {'accuracy': 0.5, 'parse_failures': 0, 'total': 4, 'box_predictions': 0,
                      'point_predictions': 4, 'meta_mismatches': 0}


def test_box_iou_threshold_is_strict():
    preds = ['[0.000,0.000,0.500,0.500]',   # IoU 1
             '[0.000,0.000,0.500,0.375]',   # IoU 0.75
             '[0.000,0.000,0.500,0.250]',   # IoU exactly 0.5 -> wrong (> 0.5 needed)
             '[0.250,0.250,0.750,0.750]']   # IoU 0.0625 / 0.4375
    scores, verdicts = score(preds)
    assert [v['iou'] for v in verdicts] == [1.0, 0.75, 0.5, round(0.0625 / 0.4375, 6)]
    assert [v['correct'] for v in verdicts] == [True, True, False, False]
    assert scores['accuracy'] == 0.5 and scores['box_predictions'] == 4


def test_parse_failures_are_counted_and_wrong():
    preds = ['I cannot tell.',                                       # nothing
             '[0.000,0.000,0.500,0.500;0.100,0.100,0.200,0.200]',    # two boxes in one bracket
             '[0.000,0.000,0.500,0.500] or [0.100,0.100,0.200,0.200]',  # two brackets
             'box [0.000,0.000,0.500,0.500] point [0.250,0.250]',    # a box and a point
             '[0.25,0.25]']                                          # fine: one point (any precision)
    scores, verdicts = score(preds)
    assert [v['num_parsed'] for v in verdicts] == [0, 2, 2, 2, 1]
    assert [v['parse_failed'] for v in verdicts] == [True, True, True, True, False]
    assert [v['correct'] for v in verdicts] == [False, False, False, False, True]
    assert scores['parse_failures'] == 4 and scores['accuracy'] == pytest.approx(0.2)


def test_point_reference_needs_metas():
    refs = ['The answer is [0.250,0.250].']
    with pytest.raises(ValueError, match=r"sample 0: .*holds 0 boxes and no metas\[i\]\['gt_box'\]"):
        score(['[0.250,0.250]'], refs)
    scores, verdicts = score(['[0.100,0.900]', '[0.9,0.9]'], refs * 2,
                             metas=[{'gt_box': [0.0, 0.75, 0.5, 1.0]}] * 2)
    assert [v['correct'] for v in verdicts] == [True, False]
    assert verdicts[0]['target_box'] == [0.0, 0.75, 0.5, 1.0]


def test_reference_box_wins_and_meta_mismatch_is_counted():
    metas = [{'gt_box': [0.0, 0.0, 0.5004, 0.5]}, {'gt_box': [0.1, 0.1, 0.6, 0.6]}]
    scores, verdicts = score(['[0.000,0.000,0.500,0.500]'] * 2, metas=metas)
    assert scores['meta_mismatches'] == 1  # 0.0004 is rounding; 0.1 is a wrong meta_space
    assert all(v['target_box'] == [0.0, 0.0, 0.5, 0.5] for v in verdicts)
    with pytest.raises(ValueError, match='1 metas for 2 references'):
        score(['a', 'b'], metas=metas[:1])


def test_formatter_from_config_and_helpers():
    metric = METRICS.build(dict(type='PointingComputeMetrics', formatter=dict(type='PlainBoxFormatter', precision=2)))
    scores, _ = metric(['[0.1,0.1,0.5,0.5]'], ['[0.10,0.10,0.50,0.50]'])
    assert scores['accuracy'] == 1.0
    assert point_in_box([0.0, 0.0], [0.0, 0.0, 0.1, 0.1]) and not point_in_box([0.2, 0.0], [0.0, 0.0, 0.1, 0.1])
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_point_qa_exact_match():
    preds = ['The answer is Red.', 'the answer is a dog', 'Two', 'It is blue. The answer is green.']
    refs = ['The answer is red.', 'The answer is dog.', 'The answer is 2.', 'The answer is green.']
    scores, verdicts = PointQAComputeMetrics()(preds, refs)
    assert [v['correct'] for v in verdicts] == [True, True, False, True]
    assert scores == {'accuracy': 0.75, 'parse_failures': 0, 'total': 4}
    scores, verdicts = PointQAComputeMetrics(require_cue=True)(['red'], ['The answer is red.'])
    assert verdicts[0]['parse_failed'] and scores['parse_failures'] == 1
