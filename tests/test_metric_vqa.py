"""Tests for the official VQA accuracy (mllm/metrics/vqa.py) on hand-computed cases."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mllm.dataset.root import METRICS
from mllm.metrics.vqa import (
    VQAv2ComputeMetrics,
    normalize_answer,
    process_punctuation,
    vqa_accuracy,
)


def ten(match: str, k: int, other: str = 'cat') -> list[str]:
    """Ten human answers of which exactly k are `match` (the rest `other`, so the answers disagree)."""
    return [match] * k + [other] * (10 - k)


@pytest.mark.parametrize('k, expected', [
    (0, 0.0),
    # k=1: leaving out the matching annotator leaves 0 matches -> 0; the other 9 subsets hold 1 -> 1/3.
    #      (1*0 + 9*(1/3)) / 10 = 3/10 = 0.3
    (1, 0.3),
    # k=2: the 2 subsets without a matching annotator hold 1 match -> 1/3; the other 8 hold 2 -> 2/3.
    #      (2*(1/3) + 8*(2/3)) / 10 = (2/3 + 16/3) / 10 = 6/10 = 0.6
    (2, 0.6),
    # k=3: 3 subsets hold 2 matches -> 2/3; 7 hold 3 -> min(3/3, 1) = 1.  (3*(2/3) + 7*1) / 10 = 9/10 = 0.9
    (3, 0.9),
    # k=4: every subset holds >= 3 matches -> 1.  (4*1 + 6*1) / 10 = 1.0
    (4, 1.0),
    (10, 1.0),
])
def test_leave_one_out_accuracy_exact_values(k, expected):
    accuracy, matches = vqa_accuracy('dog', ten('dog', k))
    assert accuracy == expected  # exact: computed as integers / 30
    assert matches == k


@settings(max_examples=60)
@given(st.lists(st.sampled_from(['dog', 'cat', 'two', '2', 'a dog']), min_size=1, max_size=12),
       st.sampled_from(['dog', 'cat', '2', 'bird']))
def test_accuracy_matches_the_definition(answers, pred):
    """Against a direct transcription of the definition (official mode, normalising when answers disagree)."""
    gts = [normalize_answer(a) for a in answers] if len(set(answers)) > 1 else answers
    p = normalize_answer(pred) if len(set(answers)) > 1 else pred
    per_annotator = [min(sum(g == p for j, g in enumerate(gts) if j != i) / 3, 1) for i in range(len(gts))]
    assert vqa_accuracy(pred, answers)[0] == pytest.approx(sum(per_annotator) / len(gts))


@pytest.mark.parametrize('raw, expected', [
    ('Two', '2'),
    ('dont', "don't"),
    ('the dog.', 'dog'),
    ('yes!', 'yes'),
    ('1,000', '1000'),          # a comma between digits: every mark is deleted, the number stays one token
    ('red,blue', 'red blue'),   # otherwise a mark with no space beside it becomes a space
    ('red, blue', 'red blue'),  # ... and a mark next to a space is deleted
    ('3.5', '3.5'),             # a period followed by a digit stays
    ('u.s.a.', 'usa'),
    ('None', '0'),
    ("A man's hat", "man's hat"),
    ('x-ray', 'x ray'),
    ('  Ten\tApples\n', '10 apples'),
    ('whats up', "what's up"),
    ('"café"', 'café'),
])
def test_official_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_rule_stops_after_32_like_the_official_code():
    # The official code passes re.UNICODE (=32) as the `count` of re.sub: only 32 periods are deleted.
    assert process_punctuation('a.' * 40) == 'a' * 32 + 'a.' * 8


def test_official_mode_compares_raw_strings_when_all_answers_agree():
    # Official master: normalisation happens only when the ten answers disagree.
    assert vqa_accuracy('two', ['2'] * 10) == (0.0, 0)
    assert vqa_accuracy(' 2\n', ['2'] * 10) == (1.0, 10)  # whitespace is always cleaned
    assert vqa_accuracy('two', ['2'] * 9 + ['3']) == (1.0, 9)  # disagreement -> normalised
    assert vqa_accuracy('two', ['2'] * 10, processing='always') == (1.0, 10)
    with pytest.raises(ValueError, match='processing'):
        vqa_accuracy('two', ['2'], processing='lenient')
    with pytest.raises(ValueError, match='no human answers'):
        vqa_accuracy('two', [])


def test_metric_scores_verdicts_and_answer_types():
    metric = METRICS.build(dict(type='VQAv2ComputeMetrics'))
    predictions = ['The answer is Two.', 'Answer: dog', 'dog', 'It is a cat. The answer is: dog!', '', 'yes']
    metas = [
        {'question_id': 1, 'answers': ['2'] * 5 + ['3'] * 5, 'answer_type': 'number'},   # 5 match -> 1.0
        {'question_id': 2, 'answers': ten('dog', 2), 'answer_type': 'other'},           # 0.6
        {'question_id': 3, 'answers': ten('dog', 3), 'answer_type': 'other'},           # 0.9
        {'question_id': 4, 'answers': ten('dog', 1), 'answer_type': 'other'},           # 0.3
        {'question_id': 5, 'answers': ['no'] * 10, 'answer_type': 'yes/no'},            # empty -> parse failure
        {'question_id': 6, 'answers': ['yes'] * 10, 'answer_type': 'yes/no'},           # 1.0
    ]
    references = ['ignored when metas hold answers'] * 6
    scores, verdicts = metric(predictions, references, metas)
    assert [v['accuracy'] for v in verdicts] == [1.0, 0.6, 0.9, 0.3, 0.0, 1.0]
    assert [v['matches'] for v in verdicts] == [5, 2, 3, 1, 0, 10]
    assert [v['pred_answer'] for v in verdicts] == ['2', 'dog', 'dog', 'dog', None, 'yes']
    assert [v['parse_failed'] for v in verdicts] == [False] * 4 + [True, False]
    assert [v['correct'] for v in verdicts] == [True, False, False, False, False, True]
    assert scores['accuracy'] == pytest.approx((1.0 + 0.6 + 0.9 + 0.3 + 0.0 + 1.0) / 6)
    assert scores['accuracy_number'] == 1.0 and scores['total_number'] == 1
    assert scores['accuracy_other'] == pytest.approx((0.6 + 0.9 + 0.3) / 3) and scores['total_other'] == 3
    assert scores['accuracy_yes_no'] == 0.5 and scores['total_yes_no'] == 2
    assert scores['parse_failures'] == 1 and scores['reference_fallbacks'] == 0 and scores['total'] == 6
    json.dumps(verdicts)  # written into the predictions JSONL


def test_parse_failures_and_require_cue():
    metric = VQAv2ComputeMetrics(require_cue=True)
    metas = [{'answers': ten('yes', 10)}] * 3
    scores, verdicts = metric(['yes', 'The answer is yes.', 'The answer is ...'], [''] * 3, metas)
    assert [v['accuracy'] for v in verdicts] == [0.0, 1.0, 0.0]
    assert [v['parse_failed'] for v in verdicts] == [True, False, True]
    assert scores['parse_failures'] == 2
    assert 'accuracy_other' not in scores  # no answer_type in these metas


def test_without_metas_falls_back_to_the_reference_answer():
    scores, verdicts = VQAv2ComputeMetrics()(['The answer is dog.', 'cat'], ['The answer is dog.', 'dog'])
    assert [v['accuracy'] for v in verdicts] == [1.0, 0.0]
    assert scores['reference_fallbacks'] == 2
    with pytest.raises(ValueError, match='sample 0'):
        VQAv2ComputeMetrics()(['dog'], [''])
    with pytest.raises(ValueError):
        VQAv2ComputeMetrics()(['dog', 'cat'], ['dog'])  # lengths differ
    with pytest.raises(ValueError, match='processing'):
        VQAv2ComputeMetrics(processing='x')
