"""Tests for tools/prepare_data/vqav2.py (official VQAv2 JSON -> JSONL) and tools/vqav2_submission.py."""
import json

import pytest

from mllm.dataset.single_image_dataset.vqa import PureVQADataset, VQAv2Dataset
from mllm.metrics.vqa import VQAv2ComputeMetrics
from tests.helpers import write_images
from tools import vqav2_submission
from tools.prepare_data import vqav2

INFO = {'description': 'This is v2.0 of the VQA dataset.', 'url': 'http://visualqa.org', 'version': '2.0',
        'year': 2017, 'contributor': 'VQA Team', 'date_created': '2017-04-26 17:07:13'}
LICENSE = {'url': 'http://creativecommons.org/licenses/by/4.0/', 'name': 'Creative Commons Attribution 4.0'}


def questions_json(subtype, questions):
    return {'info': INFO, 'task_type': 'Open-Ended', 'data_type': 'mscoco', 'license': LICENSE,
            'data_subtype': subtype, 'questions': questions}


def answers(texts, confidence='yes'):
    return [{'answer': t, 'answer_confidence': confidence, 'answer_id': k + 1} for k, t in enumerate(texts)]


VAL_QUESTIONS = [
    {'image_id': 262148, 'question': 'Where is he looking?', 'question_id': 262148000},
    {'image_id': 262148, 'question': 'What does the café sign say — “Ouvert”?', 'question_id': 262148001},
    {'image_id': 393225, 'question': 'How many bowls are there?', 'question_id': 393225000},
]
VAL_ANNOTATIONS = [
    {'question_type': 'none of the above', 'multiple_choice_answer': 'down', 'answer_type': 'other',
     'image_id': 262148, 'question_id': 262148000,
     'answers': answers(['down'] * 7 + ['at table', 'skateboard', 'table'])},
    {'question_type': 'what does the', 'multiple_choice_answer': 'ouvert', 'answer_type': 'other',
     'image_id': 262148, 'question_id': 262148001, 'answers': answers(['ouvert'] * 4 + ['open'] * 4 + ['ouvert café',
                                                                                                     'closed'])},
    {'question_type': 'how many', 'multiple_choice_answer': '2', 'answer_type': 'number',
     'image_id': 393225, 'question_id': 393225000, 'answers': answers(['2'] * 9 + ['two'], 'maybe')},
]
TESTDEV_QUESTIONS = [{'image_id': 1, 'question': 'Is the sky blue?', 'question_id': 1000},
                     {'image_id': 300, 'question': 'What animal is this?', 'question_id': 300002}]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / 'vqav2'
    root.mkdir()
    files = {
        'v2_OpenEnded_mscoco_val2014_questions.json': questions_json('val2014', VAL_QUESTIONS),
        'v2_mscoco_val2014_annotations.json': {'info': INFO, 'license': LICENSE, 'data_subtype': 'val2014',
                                               'annotations': VAL_ANNOTATIONS},
        'v2_OpenEnded_mscoco_test-dev2015_questions.json': questions_json('test-dev2015', TESTDEV_QUESTIONS),
    }
    for name, content in files.items():
        (root / name).write_text(json.dumps(content), encoding='utf-8')
    coco = tmp_path / 'coco'
    write_images(coco / 'val2014', {'COCO_val2014_000000262148.jpg': (120, 80),
                                    'COCO_val2014_000000393225.jpg': (60, 90)}, color=(1, 2, 3))
    write_images(coco / 'test2015', {'COCO_test2015_000000000001.jpg': (70, 40),
                                     'COCO_test2015_000000000300.jpg': (40, 41)}, color=(1, 2, 3))
    return {'root': root, 'coco': coco, 'out': tmp_path / 'ann'}


def test_file_names():
    assert vqav2.questions_filename('test-dev') == 'v2_OpenEnded_mscoco_test-dev2015_questions.json'
    assert vqav2.annotations_filename('train') == 'v2_mscoco_train2014_annotations.json'
    assert vqav2.image_filename('train', 9) == 'COCO_train2014_000000000009.jpg'
    assert vqav2.image_filename('test-dev', 581899) == 'COCO_test2015_000000581899.jpg'
    assert vqav2.output_filename('val') == 'vqav2_val2014.jsonl'
    with pytest.raises(vqav2.ConversionError, match="unknown VQAv2 split 'minival'"):
        vqav2.questions_filename('minival')


def test_main_writes_exact_records_and_round_trips(release, capsys):
    assert vqav2.main(['--vqa-root', str(release['root']), '--out-dir', str(release['out']),
                       '--splits', 'val', 'test-dev']) == 0
    assert 'val: 3 questions' in capsys.readouterr().out
    val_path = release['out'] / 'vqav2_val2014.jsonl'
    text = val_path.read_text(encoding='utf-8')
    assert 'café sign say — “Ouvert”' in text  # ensure_ascii=False
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {
        'question_id': 262148000, 'image_id': 262148, 'image_path': 'COCO_val2014_000000262148.jpg',
        'question': 'Where is he looking?',
        'annotation': {'question_type': 'none of the above', 'multiple_choice_answer': 'down', 'answer_type': 'other',
                       'answers': answers(['down'] * 7 + ['at table', 'skateboard', 'table'])}}
    assert [r['question_id'] for r in lines] == [262148000, 262148001, 393225000]
    assert lines[2]['image_path'] == 'COCO_val2014_000000393225.jpg'
    assert lines[2]['annotation']['answers'][0] == {'answer': '2', 'answer_confidence': 'maybe', 'answer_id': 1}

    ds = VQAv2Dataset(str(val_path), str(release['coco'] / 'val2014'))
    assert [ds[k]['conversations'][1]['value'] for k in range(3)] == ['down', 'ouvert', '2']  # 4/4 tie -> official
    assert ds[2]['image'].size == (60, 90)
    assert ds.meta(1)['answers'] == ['ouvert'] * 4 + ['open'] * 4 + ['ouvert café', 'closed']
    # Scoring predictions against those metas: 'open' matches 4 of 10 -> 1.0; 'table' matches 1 -> 0.3.
    scores, verdicts = VQAv2ComputeMetrics()(['The answer is table.', 'open', 'Two'], [''] * 3,
                                             [ds.meta(k) for k in range(3)])
    assert [v['accuracy'] for v in verdicts] == [0.3, 1.0, 1.0]
    assert scores['accuracy_number'] == 1.0

    testdev_path = release['out'] / 'vqav2_test-dev2015.jsonl'
    assert [json.loads(line) for line in testdev_path.read_text().splitlines()] == [
        {'question_id': 1000, 'image_id': 1, 'image_path': 'COCO_test2015_000000000001.jpg',
         'question': 'Is the sky blue?'},
        {'question_id': 300002, 'image_id': 300, 'image_path': 'COCO_test2015_000000000300.jpg',
         'question': 'What animal is this?'}]
    pure = PureVQADataset(str(testdev_path), str(release['coco'] / 'test2015'))
    assert pure[0]['image'].size == (70, 40) and pure.meta(1) == {'question_id': 300002}


def test_main_reports_missing_files(release, capsys):
    assert vqav2.main(['--vqa-root', str(release['root']), '--out-dir', str(release['out']), '--splits', 'train']) == 1
    err = capsys.readouterr().err
    assert 'v2_OpenEnded_mscoco_train2014_questions.json' in err and 'not found' in err


def test_inconsistent_release_errors():
    q = questions_json('val2014', VAL_QUESTIONS)
    a = {'annotations': VAL_ANNOTATIONS}
    with pytest.raises(vqav2.ConversionError, match="data_subtype is 'val2014', expected 'train2014'"):
        vqav2.convert(q, a, 'train')
    with pytest.raises(vqav2.ConversionError, match='needs its annotations file'):
        vqav2.convert(q, None, 'val')
    with pytest.raises(vqav2.ConversionError, match='ann.json: no annotation for question_id 393225000'):
        vqav2.convert(q, {'annotations': VAL_ANNOTATIONS[:2]}, 'val', annotations_name='ann.json')
    dup = questions_json('val2014', VAL_QUESTIONS + VAL_QUESTIONS[:1])
    with pytest.raises(vqav2.ConversionError, match='question_id 262148000 appears twice'):
        vqav2.convert(dup, a, 'val')
    with pytest.raises(vqav2.ConversionError, match=r"question 0 lacks \['question'\]"):
        vqav2.convert(questions_json('val2014', [{'image_id': 1, 'question_id': 2}]), a, 'val')
    wrong_image = [dict(VAL_ANNOTATIONS[0], image_id=5), *VAL_ANNOTATIONS[1:]]
    with pytest.raises(vqav2.ConversionError, match='has image_id 5'):
        vqav2.convert(q, {'annotations': wrong_image}, 'val')
    no_answers = [dict(VAL_ANNOTATIONS[0], answers=[]), *VAL_ANNOTATIONS[1:]]
    with pytest.raises(vqav2.ConversionError, match='262148000 has no answers'):
        vqav2.convert(q, {'annotations': no_answers}, 'val')
    # test splits need no annotations and ignore any given
    assert 'annotation' not in vqav2.convert(questions_json('test2015', TESTDEV_QUESTIONS), a, 'test')[0]


def test_submission_from_predictions(tmp_path, release, capsys):
    preds = tmp_path / 'preds.jsonl'
    preds.write_text('\n'.join(json.dumps(r, ensure_ascii=False) for r in [
        {'id': 0, 'pred': 'The answer is yes.', 'meta': {'question_id': 1000}},
        {'id': 1, 'pred': 'chat', 'meta': {'question_id': 300002}},
    ]) + '\n')
    out = tmp_path / 'vqa_OpenEnded_mscoco_test-dev2015_mine_results.json'
    questions = release['root'] / 'v2_OpenEnded_mscoco_test-dev2015_questions.json'
    assert vqav2_submission.main([str(preds), str(out), '--questions', str(questions)]) == 0
    assert json.loads(out.read_text()) == [{'question_id': 1000, 'answer': 'yes'},
                                           {'question_id': 300002, 'answer': 'chat'}]
    # An unanswered question is reported.
    preds.write_text(json.dumps({'id': 0, 'pred': 'yes', 'meta': {'question_id': 1000}}) + '\n')
    assert vqav2_submission.main([str(preds), str(out), '--questions', str(questions)]) == 1
    assert '1 question(s) unanswered (e.g. [300002])' in capsys.readouterr().err


@pytest.mark.parametrize('line, needle', [
    ('{"id": 0, "pred": "yes"}', 'no meta.question_id'),
    ('{"id": 0, "meta": {"question_id": 1}}', "no 'pred'"),
    ('{"id": 0, "pred": "yes", "meta": {"question_id": 5}}', 'question_id 5 already answered at p.jsonl:1'),
    ('not json', 'not valid JSON'),
])
def test_submission_errors_name_the_line(line, needle):
    lines = ['{"id": 9, "pred": "no", "meta": {"question_id": 5}}', line]
    with pytest.raises(vqav2_submission.SubmissionError) as info:
        vqav2_submission.build_results(lines, 'p.jsonl')
    assert 'p.jsonl:2' in str(info.value) and needle in str(info.value)


def official_api_layout(release, tmp_path):
    """The same files as `release`, moved into the VQA API's Questions/ and Annotations/ folders."""
    root = tmp_path / 'vqav2_api'
    for name in ('v2_OpenEnded_mscoco_val2014_questions.json', 'v2_OpenEnded_mscoco_test-dev2015_questions.json'):
        (root / 'Questions').mkdir(parents=True, exist_ok=True)
        (root / 'Questions' / name).write_bytes((release['root'] / name).read_bytes())
    (root / 'Annotations').mkdir()
    name = 'v2_mscoco_val2014_annotations.json'
    (root / 'Annotations' / name).write_bytes((release['root'] / name).read_bytes())
    return root


def test_official_api_layout_gives_the_same_files(release, tmp_path):
    api_root = official_api_layout(release, tmp_path)
    assert not list(api_root.glob('*.json'))  # nothing flat: the sub-folders must be read
    flat_out, api_out = tmp_path / 'flat_out', tmp_path / 'api_out'
    for root, out in ((release['root'], flat_out), (api_root, api_out)):
        assert vqav2.main(['--vqa-root', str(root), '--out-dir', str(out), '--splits', 'val', 'test-dev']) == 0
    names = ['vqav2_test-dev2015.jsonl', 'vqav2_val2014.jsonl']
    assert sorted(p.name for p in api_out.iterdir()) == names
    for name in names:
        assert (api_out / name).read_bytes() == (flat_out / name).read_bytes()
    assert len((api_out / 'vqav2_val2014.jsonl').read_text().splitlines()) == 3


def test_missing_file_names_both_places(release, tmp_path, capsys):
    api_root = official_api_layout(release, tmp_path)
    (api_root / 'Annotations' / 'v2_mscoco_val2014_annotations.json').unlink()
    assert vqav2.main(['--vqa-root', str(api_root), '--out-dir', str(tmp_path / 'o'), '--splits', 'val']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and '--vqa-root' in err
    assert (f"v2_mscoco_val2014_annotations.json not found: looked for {api_root}/v2_mscoco_val2014_annotations.json"
            f" and {api_root}/Annotations/v2_mscoco_val2014_annotations.json") in err
    assert not (tmp_path / 'o').exists()
