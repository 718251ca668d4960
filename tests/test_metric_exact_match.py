"""Answer extraction and exact-match accuracy (GQA in both protocols, CLEVR) on crafted predictions."""
import pytest

from mllm.dataset.root import METRICS
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
    assert scores == {'accuracy': 0.5, 'parse_failures': 1, 'total': 2, 'protocol': 'published'}
    scores, _ = CLEVRComputeMetrics()(preds, refs)
    assert scores['parse_failures'] == 0 and scores['accuracy'] == 0.5


def test_reference_without_answer_is_an_error():
    with pytest.raises(ValueError, match='holds no answer'):
        ExactMatchMetric()(['yes'], ['The answer is'])


def test_empty_input():
    assert ExactMatchMetric()([], []) == ({'accuracy': 0.0, 'parse_failures': 0, 'total': 0}, [])


# (prediction, released answer, published protocol correct, lenient correct). Published: extract the
# answer, then LLaVA's convert_gqa_for_eval.py (rstrip('.').lower()), then GQA eval.py's plain equality.
GQA_CASES = [
    ('The answer is a dog.', 'dog', False, True),      # 'a dog' != 'dog'; lenient drops the article
    ('the table', 'table', False, True),
    ('An apple.', 'apple', False, True),
    ('red  ball', 'red ball', False, True),            # two spaces: only lenient collapses them
    ('Dog.', 'dog', True, True),                       # lower case and the trailing period: both
    ('Answer: Yes', 'yes', True, True),
    ('The answer is left.', 'right', False, False),
    ('I think it is wooden', 'wooden', False, False),  # no cue: the whole text is the answer
]


def test_gqa_published_protocol_is_the_default():
    preds = [c[0] for c in GQA_CASES]
    metas = [{'question_id': str(k), 'answer': c[1]} for k, c in enumerate(GQA_CASES)]
    refs = [f'The answer is {c[1]}.' for c in GQA_CASES]
    scores, verdicts = METRICS.build(dict(type='GQAComputeMetrics'))(preds, refs, metas)
    assert [v['correct'] for v in verdicts] == [c[2] for c in GQA_CASES]
    assert scores == {'accuracy': 2 / 8, 'parse_failures': 0, 'total': 8, 'protocol': 'published'}
    assert verdicts[0]['pred_answer'] == 'a dog' and verdicts[4]['pred_answer'] == 'dog'
    # Without metas the released answer is the one extracted from the reference: same verdicts here.
    assert GQAComputeMetrics()(preds, refs)[1] == verdicts
    lenient, verdicts = GQAComputeMetrics(protocol='lenient')(preds, refs, metas)
    assert [v['correct'] for v in verdicts] == [c[3] for c in GQA_CASES]
    assert lenient == {'accuracy': 6 / 8, 'parse_failures': 0, 'total': 8, 'protocol': 'lenient'}


def test_gqa_published_compares_with_the_released_answer_as_is():
    # eval.py compares against question["answer"] unchanged; only the prediction is lower-cased.
    scores, verdicts = GQAComputeMetrics()(['T-shirt', 'The answer is T-shirt.'], ['', ''],
                                           [{'answer': 'T-shirt'}, {'answer': 't-shirt'}])
    assert [v['correct'] for v in verdicts] == [False, True]
    assert [v['target_answer'] for v in verdicts] == ['T-shirt', 't-shirt']
    with pytest.raises(ValueError, match='protocol must be one of'):
        GQAComputeMetrics(protocol='official')
    with pytest.raises(ValueError, match='holds no answer'):
        GQAComputeMetrics()(['yes'], ['The answer is'])
