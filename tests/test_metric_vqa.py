"""Tests for the official VQA accuracy (mllm/metrics/vqa.py): hand-computed cases, and a seeded comparison
with a re-implementation of the official vqaEval.py written here."""
import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mllm.dataset.root import METRICS
from mllm.metrics.vqa import (
    CONTRACTIONS,
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


def test_prediction_that_normalises_to_nothing_is_scored_as_the_official_code_does():
    # 'the.' -> 'the' after extraction -> '' after the official processing (the article goes). The official
    # code compares '' with the processed answers: the three 'the' annotators also became ''.
    # k=3 matches -> 0.9 (see the leave-one-out table above); it is still reported as a parse failure.
    metric = VQAv2ComputeMetrics()
    metas = [{'answers': ['the'] * 3 + ['dog'] * 7},
             {'answers': ['.', 'a', 'the'] + ['cat'] * 7},    # '.', 'a', 'the' all process to ''
             {'answers': ['an'] + ['cat'] * 9},               # one empty annotator: k=1 -> 0.3
             {'answers': ['dog'] * 10},                       # all agree: raw 'the' != 'dog' -> 0
             {'answers': ['the'] * 3 + ['dog'] * 7}]
    preds = ['the.', '.', '', 'The answer is the.', 'dog']
    scores, verdicts = metric(preds, [''] * 5, metas)
    assert [v['accuracy'] for v in verdicts] == [0.9, 0.9, 0.3, 0.0, 1.0]
    assert [v['matches'] for v in verdicts] == [3, 3, 1, 0, 7]
    assert [v['parse_failed'] for v in verdicts] == [True, True, True, True, False]
    assert [v['pred_answer'] for v in verdicts] == [None, None, None, None, 'dog']
    assert scores['parse_failures'] == 4 and scores['accuracy'] == pytest.approx((0.9 + 0.9 + 0.3 + 1.0) / 5)
    assert scores['processing'] == 'official'
    assert VQAv2ComputeMetrics(processing='always')(['the.'], [''], metas[3:4])[0]['processing'] == 'always'


def test_digit_rules_are_ascii_like_the_python2_script():
    # Python 2's \d (no re.UNICODE) is [0-9]: a period before an Arabic-Indic digit is deleted, and a comma
    # between such digits does not switch the punctuation rule.
    assert process_punctuation('5.\u0663') == '5\u0663'
    assert process_punctuation('\u0663,\u0663;x') == '\u0663 \u0663 x'
    assert process_punctuation('3,3;x') == '33x'


# ---- The official algorithm, re-implemented here from vqaEval.py (master, 2021), for the seeded comparison.
OFFICIAL_PUNCT = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
                  '?', '!']
# The script's own patterns. `(?!<=\d)` is a look-ahead that never fails before a '.', as in the script;
# re.ASCII because Python 2 str patterns match \d to ASCII digits only.
PERIOD_STRIP = re.compile(r'(?!<=\d)(\.)(?!\d)', re.ASCII)
COMMA_STRIP = re.compile(r'(\d)(\,)(\d)', re.ASCII)
NUMBER_MAP = {'none': '0', 'zero': '0', 'one': '1', 'two': '2', 'three': '3', 'four': '4', 'five': '5',
              'six': '6', 'seven': '7', 'eight': '8', 'nine': '9', 'ten': '10'}
# Only the entries of the script's contraction table that the generated words can reach ('Im' is a key
# with a capital, which never matches after lower-casing).
CONTRACTIONS_USED = {'dont': "don't", 'isnt': "isn't", 'cant': "can't", 'whats': "what's", 'thats': "that's",
                     'Im': "I'm", "somebody'd": 'somebodyd', 'yall': "y'all", 'wont': "won't", "let's": "let's"}


def official_punctuation(in_text: str) -> str:
    out = in_text
    for p in OFFICIAL_PUNCT:
        if (p + ' ' in in_text or ' ' + p in in_text) or COMMA_STRIP.search(in_text) is not None:
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    return PERIOD_STRIP.sub('', out, 32)  # the script passes re.UNICODE (== 32) in the count position


def official_digit_article(in_text: str) -> str:
    kept = [NUMBER_MAP.get(w, w) for w in in_text.lower().split()]
    kept = [w for w in kept if w not in ('a', 'an', 'the')]
    return ' '.join(CONTRACTIONS_USED.get(w, w) for w in kept)


def official_accuracy(res_ans: str, gt_answers: list[str]) -> float:
    """One question of VQAEval.evaluate: annotators are dicts with distinct answer_ids, as in the release."""
    gts = [{'answer': a.replace('\n', ' ').replace('\t', ' ').strip(), 'answer_id': k + 1}
           for k, a in enumerate(gt_answers)]
    res_ans = res_ans.replace('\n', ' ').replace('\t', ' ').strip()
    if len({d['answer'] for d in gts}) > 1:
        for d in gts:
            d['answer'] = official_digit_article(official_punctuation(d['answer']))
        res_ans = official_digit_article(official_punctuation(res_ans))
    accs = []
    for d in gts:
        others = [o for o in gts if o != d]
        accs.append(min(1, float(len([o for o in others if o['answer'] == res_ans])) / 3))
    return float(sum(accs)) / len(accs)


VOCAB = ['yes', 'no', 'Yes', 'YES.', '2', 'two', 'Two', '2.', 'none', '0', 'ten', '10', 'the', 'a', 'an', 'the.',
         '.', '..', 'a.', 'The', 'dog', 'a dog', 'the dog', 'Dog', 'dog.', 'dogs', 'red, white', 'red,white',
         'red white', 'x-ray', 'x ray', 'x - ray', '1,000', '1000', '1, 000', '3.5', '3.5.', 'u.s.a.', 'usa',
         'dont', "don't", 'isnt', 'cant', 'Im', 'whats', 'thats', "somebody'd", 'yall', 'wont', "let's", '(a)',
         '"yes"', 'yes!', '?', '!', 'left/right', 'left right', 't-shirt', 'shirt', '<tag>', '@home', 'it is 5.',
         '5', 'five', ' yes ', 'yes\n', 'no\tway', 'no way', 'café', 'a.b', '',
         '5.\u0663', '5\u0663', '\u0663,\u0663', '\u0663 \u0663',  # Arabic-Indic digits: Python 2's \d misses them
         'one two', 'the the', '2 dogs', 'two dogs.', 'an apple', 'apple']


def generated_questions(seed: int, n: int):
    """(prediction, ten answers): a quarter with ten identical answers, the rest drawn from a small pool."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.25:
            pool = [rng.choice(VOCAB)]
            answers = pool * 10
        else:
            pool = rng.sample(VOCAB, rng.randint(2, 4))
            answers = [rng.choice(pool) for _ in range(10)]
        pred = rng.choice(pool) if rng.random() < 0.6 else rng.choice(VOCAB)
        pred = rng.choice([pred, pred, pred.upper(), pred.capitalize(), pred + '.', ' ' + pred + '\t'])
        out.append((pred, answers))
    return out


def test_vqa_accuracy_equals_the_official_algorithm_on_generated_questions():
    questions = generated_questions(0, 6000)
    words = {w for p, answers in questions for t in [p, *answers] for w in normalize_answer(t).split()}
    assert not (words & set(CONTRACTIONS)) - set(CONTRACTIONS_USED.values()) - set(CONTRACTIONS_USED)
    for pred, answers in questions:
        assert vqa_accuracy(pred, answers)[0] == pytest.approx(official_accuracy(pred, answers), abs=1e-12), \
            (pred, answers)
    # Enough of the interesting cases occur: disagreeing answers, empty processed predictions that score.
    assert sum(len(set(a)) > 1 for _, a in questions) > 3000
    assert sum(official_accuracy(p, a) > 0 and not official_digit_article(official_punctuation(p.strip()))
               for p, a in questions) > 50


def extracted(text: str) -> str:
    """What `extract_answer` leaves of "The answer is X" for these single-cue texts ('' when nothing)."""
    return text.strip().split('\n')[0].strip(' .,;:!?"\'\n\t')


def test_metric_equals_the_official_algorithm_on_generated_predictions():
    questions = generated_questions(1, 4000)
    preds = [f'The answer is {p}' for p, _ in questions]
    scores, verdicts = VQAv2ComputeMetrics()(preds, [''] * len(preds), [{'answers': a} for _, a in questions])
    expected = [official_accuracy(extracted(p), a) for p, a in questions]
    assert [v['accuracy'] for v in verdicts] == pytest.approx(expected, abs=1e-12)
    assert scores['accuracy'] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    empty = [not official_digit_article(official_punctuation(extracted(p))) for p, _ in questions]
    assert [v['parse_failed'] for v in verdicts] == empty and scores['parse_failures'] == sum(empty)
    assert sum(e and acc > 0 for e, acc in zip(empty, expected)) > 20  # empty answers that the official code credits
