"""tools/prepare_data/gqa.py on a few questions and scene graphs in the official GQA format, then a round trip
through GQADataset. Images are non-square; boxes touch the border, one is clamped, one reference names several
objects and one names an object the scene graph lacks."""
import json

import pytest

from mllm.dataset.single_image_dataset.gqa import VERSIONS, GQADataset
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.validation import validate_item
from mllm.metrics.answer_extraction import extract_answer
from tests.helpers import read_jsonl, write_images
from tools.prepare_data import gqa


def _question(image_id, question, answer, full_answer, semantic, annotations, semantic_str, detailed):
    # Every field of an entry in questions1.2/{split}_balanced_questions.json.
    return {'semantic': semantic, 'entailed': [], 'equivalent': [], 'question': question, 'imageId': image_id,
            'isBalanced': True, 'groups': {'global': None, 'local': '13-x'}, 'answer': answer,
            'semanticStr': semantic_str, 'annotations': annotations,
            'types': {'detailed': detailed, 'semantic': 'rel', 'structural': 'query'}, 'fullAnswer': full_answer}


def _op(operation, argument, dependencies):
    return {'operation': operation, 'dependencies': dependencies, 'argument': argument}


QUESTIONS = {
    '07333408': _question(
        '2375429', 'What is on the white wall?', 'pipe', 'The pipe is on the wall.',
        [_op('select', 'wall (722332)', []), _op('filter color', 'white', [0]), _op('relate', '_,on,s (722335)', [1]),
         _op('query', 'name', [2])],
        {'answer': {'0': '722335'}, 'question': {'4:6': '722332'}, 'fullAnswer': {'1': '722335', '5': '722332'}},
        'select: wall (722332)->filter color: white [0]->relate: _,on,s (722335) [1]->query: name [2]', 'relS'),
    '20903190': _question(
        'n161313', 'Do you see a train near the female person?', 'no', 'No, there is a van near the person.',
        [_op('select', 'person (1)', []), _op('filter gender', 'female', [0]), _op('relate', 'train,near,s (-)', [1]),
         _op('exist', '?', [2])],
        {'answer': {}, 'question': {'7:9': '1'}, 'fullAnswer': {'4': '3', '7': '1'}},
        'select: person (1)->filter gender: female [0]->relate: train,near,s (-) [1]->exist: ? [2]', 'existRelSC'),
    '05515938': _question(
        'n161313', 'Are both people standing?', 'yes', 'Yes, both people are standing.',
        [_op('select', 'people (1,2)', []), _op('verify pose', 'standing', [0])],
        {'answer': {}, 'question': {'2': '1,2'}, 'fullAnswer': {'2': '1,2'}},
        'select: people (1,2)->verify pose: standing [0]', 'verifyAttr'),
    '13151146': _question(
        '2375429', 'Is the pipe to the left or to the right of the wall?', 'right',
        'The pipe is to the right of the wall.',
        [_op('select', 'pipe (722335)', []), _op('choose rel', 'wall,to the left of|to the right of,o (722332)', [0])],
        # '999999' is not in the scene graph: that reference is dropped and counted.
        {'answer': {}, 'question': {'2': '722335', '12': '722332'}, 'fullAnswer': {'1': '722335', '8': '999999'}},
        'select: pipe (722335)->choose rel: wall,to the left of|to the right of,o (722332) [0]', 'relChooser'),
}


def _object(name, x, y, w, h):
    return {'name': name, 'x': x, 'y': y, 'w': w, 'h': h, 'attributes': [], 'relations': []}


SCENE_GRAPHS = {
    '2375429': {'width': 500, 'height': 333, 'location': 'room', 'objects': {
        '722332': _object('wall', 0, 0, 500, 200),          # touches the left, top and right border
        '722335': _object('pipe', 120, 40, 30, 150)}},
    'n161313': {'width': 300, 'height': 400, 'objects': {
        '1': _object('person', 10, 50, 100, 300),
        '2': _object('person', 150, 60, 140, 345),           # y + h = 405 > 400: clamped to the image
        '3': _object('van', 0, 300, 80, 100)}},              # touches the left and bottom border
}

# The converter's exact output; tests/test_ds_gqa.py uses the first three records as its fixture.
EXPECTED = [
    {'question_id': '07333408', 'image_id': '2375429', 'img_path': '2375429.jpg', 'width': 500, 'height': 333,
     'question': 'What is on the white wall?', 'answer': 'pipe', 'full_answer': 'The pipe is on the wall.',
     'boxes': [[0.0, 0.0, 500.0, 200.0], [120.0, 40.0, 150.0, 190.0]],
     'question_boxed': 'What is on the white wall <boxes>?', 'question_boxes_seq': [[0]],
     'full_answer_boxed': 'The pipe <boxes> is on the wall <boxes>.', 'full_answer_boxes_seq': [[1], [0]],
     'semantic': [{'operation': 'select', 'argument': 'wall', 'dependencies': [], 'boxes': [0]},
                  {'operation': 'filter color', 'argument': 'white', 'dependencies': [0], 'boxes': None},
                  {'operation': 'relate', 'argument': '_,on,s', 'dependencies': [1], 'boxes': [1]},
                  {'operation': 'query', 'argument': 'name', 'dependencies': [2], 'boxes': None}]},
    {'question_id': '20903190', 'image_id': 'n161313', 'img_path': 'n161313.jpg', 'width': 300, 'height': 400,
     'question': 'Do you see a train near the female person?', 'answer': 'no',
     'full_answer': 'No, there is a van near the person.',
     'boxes': [[10.0, 50.0, 110.0, 350.0], [0.0, 300.0, 80.0, 400.0]],
     'question_boxed': 'Do you see a train near the female person <boxes>?', 'question_boxes_seq': [[0]],
     'full_answer_boxed': 'No, there is a van <boxes> near the person <boxes>.', 'full_answer_boxes_seq': [[1], [0]],
     'semantic': [{'operation': 'select', 'argument': 'person', 'dependencies': [], 'boxes': [0]},
                  {'operation': 'filter gender', 'argument': 'female', 'dependencies': [0], 'boxes': None},
                  {'operation': 'relate', 'argument': 'train,near,s', 'dependencies': [1], 'boxes': []},
                  {'operation': 'exist', 'argument': '?', 'dependencies': [2], 'boxes': None}]},
    {'question_id': '05515938', 'image_id': 'n161313', 'img_path': 'n161313.jpg', 'width': 300, 'height': 400,
     'question': 'Are both people standing?', 'answer': 'yes', 'full_answer': 'Yes, both people are standing.',
     'boxes': [[10.0, 50.0, 110.0, 350.0], [150.0, 60.0, 290.0, 400.0]],
     'question_boxed': 'Are both people <boxes> standing?', 'question_boxes_seq': [[0, 1]],
     'full_answer_boxed': 'Yes, both people <boxes> are standing.', 'full_answer_boxes_seq': [[0, 1]],
     'semantic': [{'operation': 'select', 'argument': 'people', 'dependencies': [], 'boxes': [0, 1]},
                  {'operation': 'verify pose', 'argument': 'standing', 'dependencies': [0], 'boxes': None}]},
    {'question_id': '13151146', 'image_id': '2375429', 'img_path': '2375429.jpg', 'width': 500, 'height': 333,
     'question': 'Is the pipe to the left or to the right of the wall?', 'answer': 'right',
     'full_answer': 'The pipe is to the right of the wall.',
     'boxes': [[120.0, 40.0, 150.0, 190.0], [0.0, 0.0, 500.0, 200.0]],
     'question_boxed': 'Is the pipe <boxes> to the left or to the right of the wall <boxes>?',
     'question_boxes_seq': [[0], [1]],
     'full_answer_boxed': 'The pipe <boxes> is to the right of the wall.', 'full_answer_boxes_seq': [[0]],
     'semantic': [{'operation': 'select', 'argument': 'pipe', 'dependencies': [], 'boxes': [0]},
                  {'operation': 'choose rel', 'argument': 'wall,to the left of|to the right of,o',
                   'dependencies': [0], 'boxes': [1]}]},
]
BOX_FIELDS = ('width', 'height', 'boxes', 'question_boxed', 'question_boxes_seq', 'full_answer_boxed',
              'full_answer_boxes_seq')


@pytest.fixture
def release(tmp_path):
    """questions1.2/ and sceneGraphs/ files plus images/ as unpacked from the official archives."""
    (tmp_path / 'questions1.2').mkdir()
    (tmp_path / 'sceneGraphs').mkdir()
    questions = tmp_path / 'questions1.2' / 'val_balanced_questions.json'
    questions.write_text(json.dumps(QUESTIONS))
    scenes = tmp_path / 'sceneGraphs' / 'val_sceneGraphs.json'
    scenes.write_text(json.dumps(SCENE_GRAPHS))
    images = write_images(tmp_path / 'images', {f'{image_id}.jpg': (scene['width'], scene['height'])
                                                for image_id, scene in SCENE_GRAPHS.items()}, color=(90, 140, 30))
    return {'questions': str(questions), 'scenes': str(scenes), 'images': str(images), 'root': tmp_path}


def test_converter_writes_exact_records(release, capsys):
    out = release['root'] / 'annotations' / 'GQA_val_balanced.jsonl'
    assert gqa.main(['--questions', release['questions'], '--scene-graphs', release['scenes'],
                     '--output', str(out)]) == 0
    assert read_jsonl(out) == EXPECTED
    report = capsys.readouterr().err
    assert 'wrote 4 questions' in report
    assert 'missing from the scene graphs: 1' in report and 'clamped to the image: 1' in report


def test_convert_counts_dropped_and_clamped_references():
    stats = {}
    assert gqa.convert(QUESTIONS, SCENE_GRAPHS, stats) == EXPECTED
    assert stats == {'missing_objects': 1, 'clamped_boxes': 1}


def test_without_scene_graphs_only_plain_fields(release, tmp_path):
    out = tmp_path / 'GQA_testdev_balanced.jsonl'
    gqa.main(['--questions', release['questions'], '--output', str(out)])
    records = read_jsonl(out)
    expected = [{k: v for k, v in r.items() if k not in BOX_FIELDS} for r in EXPECTED]
    for r in expected:
        r['semantic'] = [{k: v for k, v in step.items() if k != 'boxes'} for step in r['semantic']]
    assert records == expected
    ds = GQADataset(str(out), release['images'], version='q-c')
    assert ds[1]['conversations'][1]['value'] == 'No, there is a van near the person. The answer is no.'
    with pytest.raises(DataFileError, match=r'GQA_testdev_balanced.jsonl:1: version qb-a needs field.*scene-graphs'):
        GQADataset(str(out), release['images'], version='qb-a')


def test_round_trip_every_version(release, tmp_path):
    out = tmp_path / 'gqa.jsonl'
    gqa.write_jsonl(gqa.convert(QUESTIONS, SCENE_GRAPHS), str(out))
    for version in VERSIONS:
        ds = GQADataset(str(out), release['images'], version=version)
        assert len(ds) == 4
        for k, record in enumerate(EXPECTED):
            item = ds[k]
            validate_item(item, f'gqa-{version}', k, image_size=item['image'].size)
            assert item['image'].size == (record['width'], record['height'])
            assert item['source'] == f'{out}:{k + 1}'
            assert extract_answer(item['conversations'][1]['value']) == record['answer']
    ds = GQADataset(str(out), release['images'], version='qb-bc')
    item = ds[3]
    assert item['target']['boxes'] == [[120.0, 40.0, 150.0, 190.0], [0.0, 0.0, 500.0, 200.0]]
    assert item['conversations'][0]['boxes_seq'] == [[0], [1]]
    assert item['conversations'][1] == {
        'from': 'gpt', 'boxes_seq': [[0], [1]], 'points_seq': None,
        'value': 'Find the pipe <boxes>. Decide whether the pipe is to the left of or to the right of the wall '
                 '<boxes>. The answer is right.'}


@pytest.mark.parametrize('change, message', [
    (lambda q, s: q['07333408'].update(imageId='404'), "question 07333408: image '404' has no scene graph"),
    (lambda q, s: q['05515938']['annotations']['question'].update({'3:9': '1'}),
     "question 05515938: annotation span '3:9' lies outside the 4 words"),
    (lambda q, s: q['05515938']['annotations']['fullAnswer'].update({'a': '1'}),
     r"question 05515938 \(fullAnswer\): annotation span 'a' is not"),
    (lambda q, s: q['20903190'].pop('answer'), r"question 20903190: missing field\(s\) \['answer'\]"),
    (lambda q, s: q['20903190']['semantic'][1].update(dependencies=[3]),
     'question 20903190: program step 1 depends on'),
])
def test_format_errors_name_the_question(change, message):
    questions, scenes = json.loads(json.dumps(QUESTIONS)), json.loads(json.dumps(SCENE_GRAPHS))
    change(questions, scenes)
    with pytest.raises(gqa.GQAFormatError, match=message):
        gqa.convert(questions, scenes)


def test_argument_ids_and_help(capsys):
    assert gqa.split_argument('wall (722332)') == ('wall', ['722332'])
    assert gqa.split_argument('cups (1,2)') == ('cups', ['1', '2'])
    assert gqa.split_argument('train,near,s (-)') == ('train,near,s', [])
    assert gqa.split_argument('not(white)') == ('not(white)', None)
    assert gqa.split_argument('scene') == ('scene', None)
    with pytest.raises(SystemExit) as info:
        gqa.main(['--help'])
    assert info.value.code == 0
    assert '--scene-graphs' in capsys.readouterr().out


def test_invalid_json_names_the_file(tmp_path):
    bad = tmp_path / 'val_balanced_questions.json'
    bad.write_text('{"1": {"imageId": "2",\n oops}')
    with pytest.raises(gqa.GQAFormatError, match=r'val_balanced_questions.json:2: not valid JSON'):
        gqa.main(['--questions', str(bad), '--output', str(tmp_path / 'o.jsonl')])
