"""LCLComputeMetrics on hand cases: normalisation (case, quotes, "there is", "in the image", trailing
punctuation), both names present -> wrong, per-shot accuracy and the chance level, worked out by hand."""
import pytest

from mllm.dataset.root import METRICS
from mllm.metrics.lcl import LCLComputeMetrics, judge, normalise


def meta(pos, neg, shot, way=2):
    return {'positive': pos, 'negative': neg, 'negatives': [neg], 'shot': shot, 'way': way}


def test_normalise():
    assert normalise('There is "Cactus Boxer" in the image.') == 'cactus boxer'
    assert normalise("there's a ‘glass turtle’ in the image!") == 'a glass turtle'
    assert normalise('  Octo-Vacuum ... ') == 'octo-vacuum'


@pytest.mark.parametrize('prediction, correct', [
    ('There is "cactus boxer" in the image.', True),
    ('there is a Cactus Boxer in the image.', True),
    ("'CACTUS BOXER'", True),
    ('cactus boxer, not octo-vacuum', False),          # both names present
    ('There is "octo-vacuum" in the image.', False),
    ('a cactus', False),                                 # part of the name is not the name
    ('cactus boxers', False),                            # whole phrases only
    ('', False),
])
def test_judge(prediction, correct):
    assert judge(prediction, 'Cactus boxer', ['Octo-vacuum'])['correct'] is correct


def test_negative_inside_the_positive_does_not_count():
    assert judge('there is a wild cat in the image', 'wild cat', ['cat'])['correct'] is True
    assert judge('a wild cat', 'cat', ['wild cat'])['correct'] is False  # the negative is named
    assert judge('a cat and a wild cat', 'wild cat', ['cat'])['correct'] is False


def test_scores_per_shot_and_chance_level():
    preds = ['There is "tench" in the image.', 'goldfish', 'tench and goldfish', 'Tench.', 'shark']
    metas = [meta('tench', 'goldfish', 2), meta('tench', 'goldfish', 2), meta('goldfish', 'tench', 4),
             meta('tench', 'goldfish', 4), {**meta('shark', 'tench', 4), 'negatives': ['tench', 'eel'], 'way': 3}]
    scores, verdicts = LCLComputeMetrics()(preds, ['ref'] * 5, metas)
    assert [v['correct'] for v in verdicts] == [True, False, False, True, True]
    # overall 3/5; 2 shots: 1/2; 4 shots: 2/3; chance (1/2 * 4 + 1/3) / 5 = 7/15
    assert scores['accuracy'] == pytest.approx(0.6) and scores['correct'] == 3 and scores['total'] == 5
    assert scores['accuracy_2shot'] == 0.5 and scores['count_2shot'] == 2
    assert scores['accuracy_4shot'] == pytest.approx(2 / 3) and scores['count_4shot'] == 3
    assert scores['chance_level'] == pytest.approx(7 / 15)
    assert verdicts[2]['negatives_found'] == ['tench'] and verdicts[0]['shot'] == 2
    forbidden = {'id', 'pred', 'target', 'meta', 'skipped'}
    assert all(not forbidden & set(v) for v in verdicts)


def test_without_metas_the_reference_is_the_positive():
    scores, verdicts = LCLComputeMetrics()(['there is "Tench" in the image.', 'goldfish'],
                                           ['There is "tench" in the image.', 'There is "tench" in the image.'])
    assert [v['correct'] for v in verdicts] == [True, False]
    assert scores['accuracy'] == 0.5 and 'chance_level' not in scores


def test_registered():
    assert METRICS.get('LCLComputeMetrics') is LCLComputeMetrics
