"""ScienceQADataset on a fixture in the exact official layout (problems.json, pid_splits.json, images/)."""
import json

import pytest
from PIL import Image

from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.single_image_dataset.scienceqa import ScienceQADataset, format_question
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square
from mllm.dataset.validation import validate_item
from mllm.metrics.scienceqa import ScienceQAComputeMetrics
from tests.helpers import write_json


def problem(question, choices, answer, image, split, hint='', lecture='', solution=''):
    # Every field of an official problems.json entry, in the official order.
    return {'question': question, 'choices': choices, 'answer': answer, 'hint': hint, 'image': image,
            'task': 'closed choice', 'choice': 'closed choice', 'grade': 'grade4', 'subject': 'language science',
            'topic': 'word-study', 'category': 'Use guide words', 'skill': 'Use guide words', 'lecture': lecture,
            'solution': solution, 'split': split}


PROBLEMS = {
    '1': problem("Which word would you find on a dictionary page with the guide words 'café' – 'crêpe'?",
                 ['apple', 'clown', 'zebra'], 1, 'image.png', 'train', hint='Look at the naïve drawing.',
                 lecture='Guide words show the first and last word on a page.',
                 solution="Clown comes between café and crêpe, so it is on the page."),
    '2': problem('Which tense does the sentence use?', ['past', 'future'], 0, None, 'train'),  # text only
    '5': problem('Which of these states is farthest north?', ['Texas', 'Ohio', 'Maine', 'Utah'], 2,
                 'image.png', 'test', solution='Maine is farthest north.'),
    '7': problem('What is the capital of Utah?', ['Salt Lake City', 'Denver'], 0, 'image.png', 'val'),
}
IMAGE_SIZES = {'1': (120, 80), '5': (60, 90), '7': (50, 50)}
SPLITS = {'train': ['1', '2'], 'val': ['7'], 'test': ['5'], 'trainval': ['1', '2', '7'], 'minival': ['7']}


@pytest.fixture
def sqa(tmp_path):
    root = tmp_path / 'scienceqa'
    for pid, size in IMAGE_SIZES.items():
        folder = root / 'images' / PROBLEMS[pid]['split'] / pid
        folder.mkdir(parents=True)
        Image.new('RGB', size, (int(pid) * 30, 90, 10)).save(folder / 'image.png')
    write_json(root / 'problems.json', PROBLEMS)
    (root / 'pid_splits.json').write_text(json.dumps(SPLITS))
    return {'problems': str(root / 'problems.json'), 'images': str(root / 'images'),
            'pid_splits': str(root / 'pid_splits.json'), 'root': root}


def test_train_split_keeps_image_questions_in_canonical_format(sqa):
    ds = ScienceQADataset(sqa['problems'], sqa['images'], split='train')
    assert len(ds) == 1  # pid 2 has no image
    item = ds[0]
    validate_item(item, 'sqa', 0, image_size=item['image'].size)
    assert item['image'].size == (120, 80) and item['image'].getpixel((0, 0)) == (30, 90, 10)
    assert item['source'] == f"{sqa['problems']}:pid=1"
    human, gpt = item['conversations']
    expected_question = ("Which word would you find on a dictionary page with the guide words 'café' – 'crêpe'?\n"
                         "Context: Look at the naïve drawing.\n"
                         "Options: (A) apple (B) clown (C) zebra")
    assert expected_question in human['value'] and human['value'].startswith('<image>')
    assert '<question>' not in human['value']
    assert human['value'] == ds.question(0).replace('<question>', expected_question)
    assert gpt == {'from': 'gpt', 'value': 'The answer is B.', 'boxes_seq': None, 'points_seq': None}
    assert item['target'] == {'boxes': [], 'points': []}
    assert ds.meta(0) == {'pid': '1', 'answer': 'B', 'num_choices': 3, 'choices': ['apple', 'clown', 'zebra']}
    square, _ = Expand2square()(item['image'], item['target'])
    assert square.size == (120, 120) and square.getpixel((60, 20)) == (30, 90, 10)  # image pasted at y=20


def test_question_without_hint_has_no_context_line():
    assert format_question(PROBLEMS['7']) == ('What is the capital of Utah?\n'
                                              'Options: (A) Salt Lake City (B) Denver')


@pytest.mark.parametrize('version, answer', [
    ('answer', 'The answer is C.'),
    ('solution', 'Maine is farthest north.\nThe answer is C.'),
    ('lecture_solution', 'Maine is farthest north.\nThe answer is C.'),  # empty lecture is left out
])
def test_versions_of_the_answer(sqa, version, answer):
    ds = ScienceQADataset(sqa['problems'], sqa['images'], split='test', version=version)
    assert [r['pid'] for r in ds.records] == ['5']
    item = ds[0]
    assert item['image'].size == (60, 90)
    assert item['conversations'][1]['value'] == answer
    assert ds.meta(0)['answer'] == 'C' and ds.meta(0)['num_choices'] == 4
    assert ScienceQAComputeMetrics()([answer], [answer], [ds.meta(0)])[0]['accuracy'] == 1.0


def test_lecture_solution_on_train(sqa):
    ds = ScienceQADataset(sqa['problems'], sqa['images'], split='train', version='lecture_solution')
    assert ds[0]['conversations'][1]['value'] == (
        'Guide words show the first and last word on a page.\n'
        'Clown comes between café and crêpe, so it is on the page.\nThe answer is B.')


def test_pid_splits_gives_minival(sqa):
    ds = ScienceQADataset(sqa['problems'], sqa['images'], split='minival', pid_splits=sqa['pid_splits'])
    assert [r['pid'] for r in ds.records] == ['7']
    assert ds[0]['image'].size == (50, 50)  # image read from the problem's own split folder (val/7)
    trainval = ScienceQADataset(sqa['problems'], sqa['images'], split='trainval', pid_splits=sqa['pid_splits'])
    assert [r['pid'] for r in trainval.records] == ['1', '7']


def test_bad_arguments_and_records(sqa):
    with pytest.raises(ValueError, match="unknown version 'cot'"):
        ScienceQADataset(sqa['problems'], sqa['images'], version='cot')
    with pytest.raises(ValueError, match=r"split 'minival' not found.*pid_splits"):
        ScienceQADataset(sqa['problems'], sqa['images'], split='minival')
    with pytest.raises(ValueError, match="no split 'nope'"):
        ScienceQADataset(sqa['problems'], sqa['images'], split='nope', pid_splits=sqa['pid_splits'])
    with pytest.raises(MissingDataPathError) as info:
        ScienceQADataset(str(sqa['root'] / 'missing.json'), sqa['images'])
    assert info.value.key == 'filename'

    bad = dict(PROBLEMS, **{'9': dict(PROBLEMS['5'], answer=4)})
    path = sqa['root'] / 'bad.json'
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFileError, match=r'bad\.json:pid=9: answer index 4 is not one of the 4 choices'):
        ScienceQADataset(str(path), sqa['images'], split='test')
    incomplete = dict(PROBLEMS, **{'9': {k: v for k, v in PROBLEMS['5'].items() if k != 'choices'}})
    path.write_text(json.dumps(incomplete))
    with pytest.raises(DataFileError, match=r"bad\.json:pid=9: missing field\(s\) \['choices'\]"):
        ScienceQADataset(str(path), sqa['images'], split='test')
    path.write_text('{"1": {"question": "x",\n "choices": [}')
    with pytest.raises(DataFileError, match=r'bad\.json:2: not valid JSON'):
        ScienceQADataset(str(path), sqa['images'])


def test_missing_image_names_the_problem(sqa):
    (sqa['root'] / 'images' / 'test' / '5' / 'image.png').unlink()
    ds = ScienceQADataset(sqa['problems'], sqa['images'], split='test')
    with pytest.raises(DataFileError, match=r'problems\.json:pid=5: image not found: .*test/5/image\.png'):
        ds[0]
