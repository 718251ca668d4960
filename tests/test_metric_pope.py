"""POPEComputeMetrics: hand-computed scores in both readings, and the official reading against a
re-implementation of the POPE script (RUCAIBox/POPE evaluate.py) on generated free-form answers."""
import random

import pytest

from mllm.dataset.root import METRICS
from mllm.metrics.pope import POPEComputeMetrics, official_yes_no, parse_yes_no

# (prediction, label, parsed answer) in the strict reading
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
    scores, verdicts = POPEComputeMetrics(mode='strict')(preds, refs, metas)
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
    assert scores['reading'] == 'strict' and 'read_as_yes_by_default' not in scores
    # Without metas the label is read from the reference text: same scores.
    assert POPEComputeMetrics(mode='strict')(preds, refs)[0] == scores


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
    scores, verdicts = POPEComputeMetrics(mode='strict')(['no', 'no'], ['no', 'no'])  # no positives anywhere
    assert scores['accuracy'] == 1.0 and scores['precision'] == 0.0 and scores['recall'] == 0.0
    assert scores['f1'] == 0.0 and scores['yes_ratio'] == 0.0
    assert METRICS.build(dict(type='POPEComputeMetrics'))([], [])[0]['total'] == 0
    with pytest.raises(ValueError, match='holds no yes/no label'):
        POPEComputeMetrics()(['yes'], ['maybe'])
    with pytest.raises(ValueError, match='mode must be one of'):
        POPEComputeMetrics(mode='lenient')


# The same predictions read by the official script: the first sentence (text before the first '.'),
# commas removed, split on ' '; 'no' when a word is exactly No / not / no, else 'yes'.
OFFICIAL = ['yes', 'yes', 'no', 'yes', 'yes', 'no', 'yes', 'no', 'yes', 'no']


def test_official_reading_is_the_default_hand_computed():
    preds = [c[0] for c in CASES]
    metas = [{'label': c[1]} for c in CASES]
    scores, verdicts = POPEComputeMetrics()(preds, [''] * len(CASES), metas)
    assert [v['pred_answer'] for v in verdicts] == OFFICIAL
    # 'There is a cat.' and 'I cannot tell.' are now 'yes' (no failures); 'Nope, no dog here.' is 'no'.
    # label yes: TP 4 (cases 0, 1, 3, 4), FN 1 (case 2); label no: TN 3 (5, 7, 9), FP 2 (6, 8).
    assert {k: scores[k] for k in ('tp', 'fp', 'tn', 'fn', 'parse_failures', 'total')} == {
        'tp': 4, 'fp': 2, 'tn': 3, 'fn': 1, 'parse_failures': 0, 'total': 10}
    assert scores['accuracy'] == pytest.approx(7 / 10)
    assert scores['precision'] == pytest.approx(4 / 6) and scores['recall'] == pytest.approx(4 / 5)
    assert scores['f1'] == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))  # = 8/11
    assert scores['yes_ratio'] == pytest.approx(6 / 10)
    # Read as 'yes' without the word yes (any case, so 'YES' has it): 'There is a cat.', 'I cannot tell.'.
    assert scores['reading'] == 'official' and scores['read_as_yes_by_default'] == 2


@pytest.mark.parametrize('text, answer', [
    ('It is not there.', 'no'),             # "not" counts
    ('NO', 'yes'),                          # only 'No' and 'no' are negative, not 'NO'
    ('No!', 'yes'),                         # 'No!' is not the word 'No'
    ('No, there is none.', 'no'),           # the comma is removed first
    ('Yes. No.', 'yes'),                    # only the first sentence is read
    ('There is 1.5 dogs, no', 'yes'),       # ... which ends at the first '.' even inside a number
    ('Yes\nno', 'yes'),                     # split on ' ' only: 'Yes\nno' is one word
    ('yes  no', 'no'),                      # a double space leaves an empty word, 'no' is still a word
    ('', 'yes'),
    ('nope', 'yes'),
    ("isn't", 'yes'),
])
def test_official_yes_no(text, answer):
    assert official_yes_no(text) == answer


def reference_reading(text: str) -> str:
    """The POPE script's yes/no decision, transcribed from RUCAIBox/POPE evaluate.py."""
    if '.' in text:
        text = text[:text.index('.')]
    words = text.replace(',', '').split(' ')
    return 'no' if any(w in ('No', 'not', 'no') for w in words) else 'yes'


WORDS = ['Yes', 'yes', 'YES', 'No', 'no', 'NO', 'not', 'Not', 'nope', "isn't", 'none', 'Nothing', 'there', 'is',
         'a', 'dog', 'cat', 'in', 'the', 'image', 'I', 'cannot', 'tell', 'The', 'answer', 'Answer:', 'no.', 'No,',
         'yes,', 'yes!', 'not.', '1.5', '...', 'no\n', '(no)', '"no"', 'no;', 'know', 'snow']
SEPARATORS = [' ', ' ', ' ', '  ', ', ', '. ', '\n', ',', '.', '; ']


def generated_answers(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 8)
        pieces = [rng.choice(WORDS)]
        for _ in range(k - 1):
            pieces += [rng.choice(SEPARATORS), rng.choice(WORDS)]
        if rng.random() < 0.5:
            pieces.append(rng.choice(['.', '', '!', ' .']))
        out.append(''.join(pieces))
    return out


def test_official_reading_matches_the_script_on_generated_answers():
    preds = generated_answers(0, 5000)
    rng = random.Random(1)
    labels = [rng.choice(['yes', 'no']) for _ in preds]
    scores, verdicts = POPEComputeMetrics()(preds, [''] * len(preds), [{'label': y} for y in labels])
    expected = [reference_reading(p) for p in preds]
    assert [v['pred_answer'] for v in verdicts] == expected
    # Confusion counts and ratios as the script computes them from the 0/1 lists.
    pred01 = [0 if e == 'no' else 1 for e in expected]
    gold01 = [0 if y == 'no' else 1 for y in labels]
    tp = sum(p == 1 and g == 1 for p, g in zip(pred01, gold01))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred01, gold01))
    tn = sum(p == 0 and g == 0 for p, g in zip(pred01, gold01))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred01, gold01))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert (scores['tp'], scores['fp'], scores['tn'], scores['fn']) == (tp, fp, tn, fn)
    assert scores['accuracy'] == pytest.approx((tp + tn) / len(preds))
    assert scores['precision'] == pytest.approx(precision) and scores['recall'] == pytest.approx(recall)
    assert scores['f1'] == pytest.approx(2 * precision * recall / (precision + recall))
    assert scores['yes_ratio'] == pytest.approx(pred01.count(1) / len(preds))
    # Both answers occur often, and the strict reading disagrees with the script on many of these texts.
    assert 0.2 < expected.count('no') / len(expected) < 0.8
    strict = [parse_yes_no(p) for p in preds]
    assert sum(s != e for s, e in zip(strict, expected)) > 500
