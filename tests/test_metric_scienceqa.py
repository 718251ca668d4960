"""ScienceQAComputeMetrics on crafted predictions with hand-counted results."""
import pytest

from mllm.dataset.root import METRICS
from mllm.metrics.scienceqa import ScienceQAComputeMetrics, parse_choice

OCEANS = ['the Atlantic Ocean', 'the Indian Ocean', 'the Pacific Ocean']


def _meta(answer, choices):
    return {'answer': answer, 'num_choices': len(choices), 'choices': choices}


CASES = [
    # (prediction, meta, parsed letter, correct)
    ('The answer is B.', _meta('B', ['x', 'y', 'z']), 'B', True),
    ('Answer: (C)', _meta('C', OCEANS), 'C', True),
    ('(A)', _meta('B', ['x', 'y']), 'A', False),
    ('B', _meta('B', ['x', 'y']), 'B', True),
    ('The Pacific Ocean.', _meta('C', OCEANS), 'C', True),                  # exact text of a choice
    ('I am not sure.', _meta('A', ['x', 'y']), None, False),                # parse failure
    ('The answer is E.', _meta('A', ['x', 'y', 'z']), None, False),         # E is not among 3 options
    ('Since 3 > 2 the answer is A. No wait, the answer is D.', _meta('D', list('wxyz')), 'D', True),  # last cue
]


def test_crafted_predictions_hand_counted():
    preds = [c[0] for c in CASES]
    metas = [c[1] for c in CASES]
    refs = [f"The answer is {m['answer']}." for m in metas]
    scores, verdicts = ScienceQAComputeMetrics()(preds, refs, metas)
    # correct: cases 0, 1, 3, 4, 7 -> 5 of 8; parse failures: cases 5 and 6.
    assert scores == {'accuracy': 5 / 8, 'parse_failures': 2, 'total': 8}
    assert [v['pred_answer'] for v in verdicts] == [c[2] for c in CASES]
    assert [v['correct'] for v in verdicts] == [c[3] for c in CASES]
    assert [v['parse_failed'] for v in verdicts] == [c[2] is None for c in CASES]
    assert [v['target_answer'] for v in verdicts] == [m['answer'] for m in metas]


def test_without_metas_the_reference_text_gives_the_letter():
    refs = ['The answer is B.', 'Solution text here.\nThe answer is A.', 'The answer is C.']
    preds = ['Answer: B', 'A. because it is', 'The answer is (B) Ohio.']
    scores, verdicts = ScienceQAComputeMetrics()(preds, refs)
    assert scores == {'accuracy': pytest.approx(2 / 3), 'parse_failures': 0, 'total': 3}
    assert [v['target_answer'] for v in verdicts] == ['B', 'A', 'C']
    assert [v['pred_answer'] for v in verdicts] == ['B', 'A', 'B']


@pytest.mark.parametrize('text, letter', [
    ('A dog is running.', None),            # an article is not an option letter
    ('B) Ohio', 'B'),
    ('(C) Maine', 'C'),
    ('The options are (A) and (B).', None),  # two different letters: ambiguous
    ('I pick (B) here.', 'B'),               # a single parenthesised letter anywhere
    ("'D'", 'D'),
    ('The answer is: C', 'C'),
])
def test_parse_choice(text, letter):
    assert parse_choice(text, num_choices=4) == letter


def test_registered_and_reference_without_letter_raises():
    metric = METRICS.build(dict(type='ScienceQAComputeMetrics'))
    with pytest.raises(ValueError, match='holds no option letter'):
        metric(['B'], ['no letter here'])
