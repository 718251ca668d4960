"""tools/prepare_data/clevr.py on questions and a scene in the official CLEVR v1.0 format (program execution,
points from pixel_coords, one clamped), then a round trip through CLEVRDataset."""
import json

import pytest

from mllm.dataset.single_image_dataset.clevr import VERSIONS, CLEVRDataset
from mllm.dataset.validation import validate_item
from mllm.metrics.answer_extraction import extract_answer
from tests.helpers import read_jsonl, write_images
from tools.prepare_data import clevr


def node(function, inputs=(), values=()):
    return {'inputs': list(inputs), 'function': function, 'value_inputs': list(values)}


def obj(color, size, shape, material, pixel_coords):
    return {'color': color, 'size': size, 'rotation': 30.5, 'shape': shape, '3d_coords': [-1.2, 2.1, 0.7],
            'material': material, 'pixel_coords': pixel_coords}


OBJECTS = [
    obj('red', 'large', 'cube', 'metal', [100, 200, 10.5]),
    obj('blue', 'small', 'sphere', 'rubber', [300, 150, 12.1]),
    obj('gray', 'large', 'cylinder', 'rubber', [480, 319, 8.0]),   # on the right and bottom border
    obj('red', 'small', 'sphere', 'rubber', [-2, 100, 11.0]),      # centre just outside: clamped to x = 0
]
# relationships[rel][i]: the objects that are `rel` of object i (left/right by x, front/behind by y here).
SCENES = {'info': {'split': 'val', 'version': '1.0'}, 'scenes': [{
    'split': 'val', 'image_index': 0, 'image_filename': 'CLEVR_val_000000.png', 'objects': OBJECTS,
    'relationships': {'right': [[1, 2], [2], [], [0, 1, 2]], 'behind': [[1, 3], [3], [0, 1, 3], []],
                      'front': [[2], [0, 2], [], [0, 1, 2]], 'left': [[3], [0, 3], [0, 1, 3], []]},
    'directions': {'right': [0.65, 0.75, 0.0], 'behind': [-0.75, 0.65, 0.0], 'above': [0.0, 0.0, 1.0],
                   'below': [-0.0, -0.0, -1.0], 'left': [-0.65, -0.75, -0.0], 'front': [0.75, -0.65, -0.0]}}]}


def question(index, text, answer, program, family):
    return {'image_index': 0, 'program': program, 'question_index': index, 'image_filename': 'CLEVR_val_000000.png',
            'question_family_index': family, 'split': 'val', 'answer': answer, 'question': text}


QUESTIONS = {'info': {'split': 'val', 'version': '1.0'}, 'questions': [
    question(0, 'Are there any other things that have the same shape as the tiny blue ball?', 'yes',
             [node('scene'), node('filter_size', [0], ['small']), node('filter_color', [1], ['blue']),
              node('filter_shape', [2], ['sphere']), node('unique', [3]), node('same_shape', [4]),
              node('exist', [5])], 38),
    question(1, 'How many things are right of the red cube?', 2,  # counts may come as numbers
             [node('scene'), node('filter_color', [0], ['red']), node('filter_shape', [1], ['cube']),
              node('unique', [2]), node('relate', [3], ['right']), node('count', [4])], 5),
    question(2, 'Are there more balls than blocks?', 'yes',
             [node('scene'), node('filter_shape', [0], ['sphere']), node('count', [1]), node('scene'),
              node('filter_shape', [3], ['cube']), node('count', [4]), node('greater_than', [2, 5])], 8),
    question(3, 'Are there any large metal spheres?', 'no',
             [node('scene'), node('filter_size', [0], ['large']), node('filter_material', [1], ['metal']),
              node('filter_shape', [2], ['sphere']), node('exist', [3])], 14),
]}
# The converter's layout (also the builders of tests/test_ds_clevr.py's records): object centres, program steps.
POINTS = [[100.0, 200.0], [300.0, 150.0], [480.0, 319.0], [0.0, 100.0]]


def step(function, inputs, values=(), objects=None, value=None):
    out = {'function': function, 'inputs': inputs, 'value_inputs': list(values)}
    out.update({'objects': objects} if objects is not None else {'value': value})
    return out


def record(index, text, answer, family, program):
    return {'question_index': index, 'image_index': 0, 'img_path': 'CLEVR_val_000000.png', 'question': text,
            'answer': answer, 'question_family_index': family, 'points': POINTS, 'program': program}


EXPECTED = [
    record(0, 'Are there any other things that have the same shape as the tiny blue ball?', 'yes', 38, [
        step('scene', [], objects=[0, 1, 2, 3]), step('filter_size', [0], ['small'], objects=[1, 3]),
        step('filter_color', [1], ['blue'], objects=[1]), step('filter_shape', [2], ['sphere'], objects=[1]),
        step('unique', [3], objects=[1]), step('same_shape', [4], objects=[3]), step('exist', [5], value='yes')]),
    record(1, 'How many things are right of the red cube?', '2', 5, [
        step('scene', [], objects=[0, 1, 2, 3]), step('filter_color', [0], ['red'], objects=[0, 3]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('unique', [2], objects=[0]),
        step('relate', [3], ['right'], objects=[1, 2]), step('count', [4], value='2')]),
    record(2, 'Are there more balls than blocks?', 'yes', 8, [
        step('scene', [], objects=[0, 1, 2, 3]), step('filter_shape', [0], ['sphere'], objects=[1, 3]),
        step('count', [1], value='2'), step('scene', [], objects=[0, 1, 2, 3]),
        step('filter_shape', [3], ['cube'], objects=[0]), step('count', [4], value='1'),
        step('greater_than', [2, 5], value='yes')]),
    record(3, 'Are there any large metal spheres?', 'no', 14, [
        step('scene', [], objects=[0, 1, 2, 3]), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_material', [1], ['metal'], objects=[0]), step('filter_shape', [2], ['sphere'], objects=[]),
        step('exist', [3], value='no')]),
]


@pytest.fixture
def release(tmp_path):
    """CLEVR_v1.0/{questions,scenes,images/val} as unpacked from CLEVR_v1.0.zip."""
    root = tmp_path / 'CLEVR_v1.0'
    for sub in ('questions', 'scenes'):
        (root / sub).mkdir(parents=True)
    (root / 'questions' / 'CLEVR_val_questions.json').write_text(json.dumps(QUESTIONS))
    (root / 'scenes' / 'CLEVR_val_scenes.json').write_text(json.dumps(SCENES))
    write_images(root / 'images' / 'val', {'CLEVR_val_000000.png': (480, 320)}, color=(128, 128, 128, 255), mode='RGBA')
    return root


def test_converter_writes_exact_records(release, tmp_path, capsys):
    out = tmp_path / 'annotations' / 'CLEVR_val.jsonl'
    assert clevr.main(['--questions', str(release / 'questions' / 'CLEVR_val_questions.json'),
                       '--scenes', str(release / 'scenes' / 'CLEVR_val_scenes.json'), '--output', str(out)]) == 0
    assert read_jsonl(out) == EXPECTED
    report = capsys.readouterr().err
    assert 'wrote 4 questions' in report and 'clamped to the image: 1' in report


def test_convert_counts_clamped_points_once_per_image():
    stats = {}
    assert clevr.convert(QUESTIONS, SCENES, stats=stats) == EXPECTED
    assert stats == {'clamped_points': 1}
    # A smaller image clamps more centres: (480, 319) and (300, 150) fall outside 256x128.
    stats = {}
    records = clevr.convert(QUESTIONS, SCENES, image_size=(256, 128), stats=stats)
    assert records[0]['points'] == [[100.0, 128.0], [256.0, 128.0], [256.0, 128.0], [0.0, 100.0]]
    assert stats == {'clamped_points': 4}


def test_round_trip_every_version(release, tmp_path):
    out = tmp_path / 'CLEVR_val.jsonl'
    clevr.write_jsonl(clevr.convert(QUESTIONS, SCENES), str(out))
    for version in VERSIONS:
        ds = CLEVRDataset(str(out), str(release / 'images' / 'val'), version=version)
        for k, expected in enumerate(EXPECTED):
            item = ds[k]
            assert item['image'].size == (480, 320) and item['image'].mode == 'RGB'
            validate_item(item, f'clevr {version}', k, image_size=(480, 320), box_tolerance=0)
            assert extract_answer(item['conversations'][1]['value'], require_cue=True) == expected['answer']
    ds = CLEVRDataset(str(out), str(release / 'images' / 'val'), version='q-bs')
    item = ds[1]
    assert item['conversations'][1]['value'] == ('Find the red cube <points>. Find the objects right of the red cube '
                                                 '<points>. Counting them gives 2. The answer is 2.')
    assert item['conversations'][1]['points_seq'] == [[0], [1, 2]]
    assert item['target']['points'] == [[100.0, 200.0], [300.0, 150.0], [480.0, 319.0]]


def _broken(change):
    questions, scenes = json.loads(json.dumps(QUESTIONS)), json.loads(json.dumps(SCENES))
    change(questions, scenes)
    return questions, scenes


@pytest.mark.parametrize('change, message', [
    (lambda q, s: q['questions'][1].update(answer='3'),
     r"question 1 \(CLEVR_val_000000.png\): the program yields '2' but the answer is '3'"),
    (lambda q, s: q['questions'][1]['program'][2].update(value_inputs=['cylinder']),
     r'question 1 .*: step 3: unique over 0 objects'),
    (lambda q, s: q['questions'][0]['program'][1].update(function='filter_weight'),
     r"question 0 .*: step 1: unknown program function 'filter_weight'"),
    (lambda q, s: q['questions'][0]['program'][1].update(inputs=[4]),
     r'question 0 .*: step 1 \(filter_size\) takes inputs \[4\], not earlier steps'),
    (lambda q, s: q['questions'][1]['program'][4].update(value_inputs=['above']),
     r"question 1 .*: step 4 \(relate \['above'\]\) cannot run on the scene"),
    (lambda q, s: s['scenes'][0].update(image_filename='CLEVR_val_000001.png'),
     r'question 0 \(CLEVR_val_000000.png\): no scene for this image'),
    (lambda q, s: [x.pop(k) for x in q['questions'] for k in ('answer', 'program')],
     r"question 0 .*: missing field\(s\) \['answer', 'program'\] \(the test split"),
])
def test_errors_name_the_question(change, message):
    questions, scenes = _broken(change)
    with pytest.raises(clevr.CLEVRFormatError, match=message):
        clevr.convert(questions, scenes)


def test_help_and_invalid_json(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        clevr.main(['--help'])
    assert info.value.code == 0 and '--scenes' in capsys.readouterr().out
    bad = tmp_path / 'CLEVR_val_scenes.json'
    bad.write_text('{"scenes": [\n{]}')
    with pytest.raises(clevr.CLEVRFormatError, match=r'CLEVR_val_scenes.json:2: not valid JSON'):
        clevr.main(['--questions', str(bad), '--scenes', str(bad), '--output', str(tmp_path / 'o.jsonl')])
