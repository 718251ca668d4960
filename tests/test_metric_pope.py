"""POPEComputeMetrics on crafted predictions with hand-computed scores."""
import pytest

from mllm.dataset.root import METRICS
from mllm.metrics.pope import POPEComputeMetrics, parse_yes_no

# (prediction, label, parsed answer)
CASES = [
    ('Yes, there is a snowboard.', 'yes', 'yes'),   # TP
    ('The answer is yes.', 'yes', 'yes'),           # TP
    ('No.', 'yes', 'no'),                           # FN
    ('There is a cat.', 'yes', None),               # parse failure -> FN
    ('yes', 'yes', 'yes'),                          # TP
    ('No, there is not.', 'no', 'no'),              # TN
    ('YES', 'no', 'yes'),                           # FP
    ('The answer is no.', 'no', 'no'),              # TN
    ('I cannot tell.', 'no', None),                 # parse failure: wrong, neither TN nor FP
    ('Nope, no dog here.', 'no', 'no'),             # "Nope" is not the word "no"; the next word is -> TN
]


def test_crafted_predictions_hand_computed():
    preds = [c[0] for c in CASES]
    metas = [{'label': c[1], 'question_id': k} for k, c in enumerate(CASES)]
    refs = [f'The answer is {c[1]}.' for c in CASES]
    scores, verdicts = POPEComputeMetrics()(preds, refs, metas)
    # TP=3, FN=2 (one 'no', one failure), FP=1, TN=3, failures=2, predicted yes=4 of 10.
    assert {k: scores[k] for k in ('tp', 'fp', 'tn', 'fn', 'parse_failures', 'total')} == {
        'tp': 3, 'fp': 1, 'tn': 3, 'fn': 2, 'parse_failures': 2, 'total': 10}
    assert scores['accuracy'] == pytest.approx(6 / 10)
    assert scores['precision'] == pytest.approx(3 / 4)
    assert scores['recall'] == pytest.approx(3 / 5)
    assert scores['f1'] == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))  # = 2/3
    assert scores['f1'] == pytest.approx(2 / 3)
    assert scores['yes_ratio'] == pytest.approx(4 / 10)
    assert [v['pred_answer'] for v in verdicts] == [c[2] for c in CASES]
    assert [v['correct'] for v in verdicts] == [c[2] == c[1] for c in CASES]
    assert [v['parse_failed'] for v in verdicts] == [c[2] is None for c in CASES]
    assert [v['question_id'] for v in verdicts] == list(range(10))
    # Without metas the label is read from the reference text: same scores.
    assert POPEComputeMetrics()(preds, refs)[0] == scores


@pytest.mark.parametrize('text, answer', [
    ('It is not there.', None),          # "not" is not "no"
    ('Answer: No', 'no'),
    ('I think yes, but no.', 'yes'),     # the first of the two words wins
    ('Yes.\nNo.', 'yes'),                # only the first line is read
    ('', None),
])
def test_parse_yes_no(text, answer):
    assert parse_yes_no(text) == answer


def test_degenerate_inputs():
    scores, verdicts = POPEComputeMetrics()(['no', 'no'], ['no', 'no'])  # no positives anywhere
    assert scores['accuracy'] == 1.0 and scores['precision'] == 0.0 and scores['recall'] == 0.0
    assert scores['f1'] == 0.0 and scores['yes_ratio'] == 0.0
    assert METRICS.build(dict(type='POPEComputeMetrics'))([], [])[0]['total'] == 0
    with pytest.raises(ValueError, match='holds no yes/no label'):
        POPEComputeMetrics()(['yes'], ['maybe'])
