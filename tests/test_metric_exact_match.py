"""Answer extraction and exact-match accuracy (GQA / CLEVR) on crafted predictions."""
import pytest

from mllm.metrics.answer_extraction import extract_answer, normalize_short_answer
from mllm.metrics.exact_match import CLEVRComputeMetrics, ExactMatchMetric, GQAComputeMetrics


@pytest.mark.parametrize('text, expected', [
    ('The answer is yes.', 'yes'),
    ('Answer: blue', 'blue'),
    ('answer:  left side ', 'left side'),
    ('The cup is on the table [0.1,0.2,0.3,0.4]. So the answer is table.', 'table'),
    # the LAST cue wins: reasoning may quote an earlier "answer"
    ('The answer is not obvious. Looking closer, the final answer is 3.', '3'),
    ('wooden', 'wooden'),
    ('The answer is', None),
    ('', None),
    ('Answer: two\nExtra line', 'two'),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_requiring_a_cue():
    assert extract_answer('wooden', require_cue=True) is None
    assert extract_answer('so the answer is wooden.', require_cue=True) == 'wooden'


@pytest.mark.parametrize('text, expected', [('The Table.', 'table'), ('A  red   ball', 'red ball'),
                                            ('an apple', 'apple'), ('Theater', 'theater'), ('yes!', 'yes')])
def test_normalize_short_answer(text, expected):
    assert normalize_short_answer(text) == expected


def test_exact_match_counts_and_verdicts():
    preds = ['The answer is yes.', 'Answer: Red', 'I am not sure', 'The answer is', 'the answer is 2']
    refs = ['yes', 'The answer is red.', 'blue', 'left', 'The answer is 3.']
    scores, verdicts = ExactMatchMetric()(preds, refs)
    # 'I am not sure' has no cue but counts as an answer (plain short-answer models): wrong, not a failure
    assert scores == {'accuracy': 2 / 5, 'parse_failures': 1, 'total': 5}
    assert [v['correct'] for v in verdicts] == [True, True, False, False, False]
    assert verdicts[3] == {'pred_answer': None, 'target_answer': 'left', 'parse_failed': True, 'correct': False}
    assert verdicts[2]['pred_answer'] == 'i am not sure'


def test_require_cue_turns_a_truncated_chain_of_thought_into_a_parse_failure():
    preds = ['The ball [0.1,0.2,0.3,0.4] is left of the cube', 'The answer is cube.']
    refs = ['The answer is cube.', 'The answer is cube.']
    scores, _ = GQAComputeMetrics(require_cue=True)(preds, refs)
    assert scores == {'accuracy': 0.5, 'parse_failures': 1, 'total': 2}
    scores, _ = CLEVRComputeMetrics()(preds, refs)
    assert scores['parse_failures'] == 0 and scores['accuracy'] == 0.5


def test_reference_without_answer_is_an_error():
    with pytest.raises(ValueError, match='holds no answer'):
        ExactMatchMetric()(['yes'], ['The answer is'])


def test_empty_input():
    assert ExactMatchMetric()([], []) == ({'accuracy': 0.0, 'parse_failures': 0, 'total': 0}, [])
