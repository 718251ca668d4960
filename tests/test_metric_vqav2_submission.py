"""tools/vqav2_submission.py writes answers the way the official evaluation compares them."""
import json

import pytest

from tests.test_metric_vqa import official_accuracy
from tools import vqav2_submission

# (generated text, answer written, hand-applied official processing)
CASES = [
    ('Yes', 'yes'),                          # lower case
    ('The answer is Two.', '2'),             # number word -> digit; the period goes with extraction
    ('Answer: Two dogs', '2 dogs'),
    ('the dog', 'dog'),                      # article dropped
    ('dont know', "don't know"),             # the official contraction table
    ('1,000', '1000'),                       # comma between digits: the number stays one token
    ('x-ray', 'x ray'),                      # '-' with no space beside it becomes a space
    ('The answer is the.', ''),              # nothing left: an empty answer, as the server would make it
    ('', ''),
]


def lines(texts):
    return [json.dumps({'id': k, 'pred': t, 'meta': {'question_id': 100 + k}}) for k, t in enumerate(texts)]


def test_answers_get_the_official_processing():
    results = vqav2_submission.build_results(lines([c[0] for c in CASES]), 'p.jsonl')
    assert results == [{'question_id': 100 + k, 'answer': c[1]} for k, c in enumerate(CASES)]
    raw = vqav2_submission.build_results(lines([c[0] for c in CASES]), 'p.jsonl', normalize=False)
    assert [r['answer'] for r in raw] == ['Yes', 'Two', 'Two dogs', 'the dog', 'dont know', '1,000', 'x-ray', 'the', '']


@pytest.mark.parametrize('text, answers', [
    ('Yes', ['yes'] * 10),     # ten annotators agree: the server compares strings as they are
    ('Two.', ['2'] * 10),
    ('Two.', ['2'] * 9 + ['3']),
])
def test_the_server_scores_the_written_answer_as_intended(text, answers):
    # The server runs the official algorithm (re-implemented in test_metric_vqa.py) on what is written.
    written = vqav2_submission.build_results(lines([text]))[0]['answer']
    raw = vqav2_submission.build_results(lines([text]), normalize=False)[0]['answer']
    assert official_accuracy(written, answers) == 1.0
    assert official_accuracy(raw, answers) == (0.0 if len(set(answers)) == 1 else 1.0)


def test_raw_answers_flag(tmp_path, capsys):
    preds = tmp_path / 'preds.jsonl'
    preds.write_text('\n'.join(lines(['The answer is Yes.', 'Two.'])) + '\n')
    out = tmp_path / 'results.json'
    assert vqav2_submission.main([str(preds), str(out)]) == 0
    assert json.loads(out.read_text()) == [{'question_id': 100, 'answer': 'yes'}, {'question_id': 101, 'answer': '2'}]
    assert vqav2_submission.main([str(preds), str(out), '--raw-answers']) == 0
    assert [r['answer'] for r in json.loads(out.read_text())] == ['Yes', 'Two']
    assert '2 answers (0 empty)' in capsys.readouterr().out
