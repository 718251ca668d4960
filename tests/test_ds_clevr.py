"""CLEVRDataset on hand-written JSONL in the converter's layout: the three versions' texts, points after
Expand2square (480x320 images), answer extraction and the errors for bad files; and on Shikra's
CLEVR_*_questions_with_ans.jsonl joined with its scenes JSONL by line."""
import json

import pytest

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.single_image_dataset.clevr import VERSIONS, CLEVRDataset, reasoning_steps
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import Expand2square, norm_point_xy
from mllm.dataset.validation import validate_item
from mllm.metrics.answer_extraction import extract_answer
from mllm.metrics.exact_match import CLEVRComputeMetrics
from tests.helpers import write_images, write_jsonl
from tests.test_prep_clevr import POINTS, QUESTIONS, SCENES, node, obj, record, step

# Questions on the scene of tests/test_prep_clevr.py (its POINTS; CLEVR images are RGBA PNGs), family 0.
IMAGES = {'CLEVR_val_000000.png': (480, 320)}
ALL = [0, 1, 2, 3]
RECORDS = [
    record(0, 'Are there any other things that have the same shape as the tiny blue ball?', 'yes', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['small'], objects=[1, 3]),
        step('filter_color', [1], ['blue'], objects=[1]), step('filter_shape', [2], ['sphere'], objects=[1]),
        step('unique', [3], objects=[1]), step('same_shape', [4], objects=[3]), step('exist', [5], value='yes')]),
    record(1, 'What material is the big cylinder?', 'rubber', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_shape', [1], ['cylinder'], objects=[2]), step('unique', [2], objects=[2]),
        step('query_material', [3], value='rubber')]),
    record(2, 'How many things are either red cubes or small spheres?', '3', 0, [
        step('scene', [], objects=ALL), step('filter_color', [0], ['red'], objects=[0, 3]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('scene', [], objects=ALL),
        step('filter_size', [3], ['small'], objects=[1, 3]), step('filter_shape', [4], ['sphere'], objects=[1, 3]),
        step('union', [2, 5], objects=[0, 1, 3]), step('count', [6], value='3')]),
    record(3, 'Are there any large metal spheres?', 'no', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_material', [1], ['metal'], objects=[0]), step('filter_shape', [2], ['sphere'], objects=[]),
        step('exist', [3], value='no')]),
    record(4, 'Is the color of the large cube the same as the cylinder?', 'no', 0, [
        step('scene', [], objects=ALL), step('filter_size', [0], ['large'], objects=[0, 2]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('unique', [2], objects=[0]),
        step('query_color', [3], value='red'), step('scene', [], objects=ALL),
        step('filter_shape', [5], ['cylinder'], objects=[2]), step('unique', [6], objects=[2]),
        step('query_color', [7], value='gray'), step('equal_color', [4, 8], value='no')]),
    # A relate whose result a filter narrows: right of the red cube (0) are 1 and 2; the sphere among them is 1.
    record(5, 'How many spheres are right of the red cube?', '1', 0, [
        step('scene', [], objects=ALL), step('filter_color', [0], ['red'], objects=[0, 3]),
        step('filter_shape', [1], ['cube'], objects=[0]), step('unique', [2], objects=[0]),
        step('relate', [3], ['right'], objects=[1, 2]), step('filter_shape', [4], ['sphere'], objects=[1]),
        step('count', [5], value='1')]),
]


@pytest.fixture
def data(tmp_path):
    images = write_images(tmp_path / 'images' / 'val', IMAGES, color=(10, 200, 10, 255), mode='RGBA')
    return {'jsonl': write_jsonl(tmp_path / 'CLEVR_val.jsonl', RECORDS), 'images': str(images)}


def gpt(ds, k):
    turn = ds[k]['conversations'][1]
    return turn['value'], turn['points_seq']


def test_answer_texts(data):
    a = CLEVRDataset(data['jsonl'], data['images'], version='q-a')
    assert [gpt(a, k) for k in range(len(RECORDS))] == [(f"The answer is {r['answer']}.", None) for r in RECORDS]
    s = CLEVRDataset(data['jsonl'], data['images'], version='q-s')
    assert [gpt(s, k)[0] for k in range(len(RECORDS))] == [
        'Find the small blue sphere. Find the other objects with the same shape as the small blue sphere. '
        'So at least one exists. The answer is yes.',
        'Find the large cylinder. The material of the large cylinder is rubber. The answer is rubber.',
        'Find the red cubes. Find the small spheres. Find the red cubes or small spheres. Counting them gives 3. '
        'The answer is 3.',
        'There are no large metal spheres. So none exists. The answer is no.',
        'Find the large cube. The color of the large cube is red. Find the cylinder. The color of the cylinder is '
        'gray. Red and gray are different. The answer is no.',
        'Find the red cube. Find the objects right of the red cube. Find the spheres right of the red cube. '
        'Counting them gives 1. The answer is 1.',
    ]
    bs = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')
    assert gpt(bs, 0) == ('Find the small blue sphere <points>. Find the other objects with the same shape as the '
                          'small blue sphere <points>. So at least one exists. The answer is yes.', [[0], [1]])
    assert gpt(bs, 2) == ('Find the red cubes <points>. Find the small spheres <points>. Find the red cubes or small '
                          'spheres <points>. Counting them gives 3. The answer is 3.', [[0], [1, 2], [0, 1, 2]])
    assert gpt(bs, 3) == ('There are no large metal spheres. So none exists. The answer is no.', None)
    assert bs[3]['target'] == {'boxes': [], 'points': []}


def test_relate_result_narrowed_by_a_filter_still_shows_its_points(data):
    """Shikra's chains name every relate result; the objects right of the red cube are found before the filter."""
    item = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')[5]
    assert item['conversations'][1] == {
        'from': 'gpt',
        'value': 'Find the red cube <points>. Find the objects right of the red cube <points>. Find the spheres '
                 'right of the red cube <points>. Counting them gives 1. The answer is 1.',
        'boxes_seq': None,
        'points_seq': [[0], [1, 2], [1]],
    }
    # points in order of first use: the red cube, then the blue sphere and the gray cylinder (right of it)
    assert item['target'] == {'boxes': [], 'points': [[100.0, 200.0], [300.0, 150.0], [480.0, 319.0]]}


def test_every_version_validates_and_extracts_the_answer(data):
    metric = CLEVRComputeMetrics(require_cue=True)
    for version in VERSIONS:
        ds = CLEVRDataset(data['jsonl'], data['images'], version=version)
        references = []
        for k, rec in enumerate(RECORDS):
            item = ds[k]
            validate_item(item, f'clevr {version}', k, image_size=(480, 320), box_tolerance=0)
            human, answer = item['conversations']
            assert human['value'].count('<image>') == 1 and rec['question'] in human['value']
            assert extract_answer(answer['value'], require_cue=True) == rec['answer']
            assert ds.meta(k) == {'question_index': rec['question_index'], 'answer': rec['answer']}
            references.append(answer['value'])
        scores, _ = metric(references, references)
        assert scores == {'accuracy': 1.0, 'parse_failures': 0, 'total': len(RECORDS)}


def test_points_after_expand2square(data):
    ds = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')
    item = ds[2]
    # Used in order of first mention: red cube (0), then the two small spheres (1 and 3 of the scene).
    assert item['target']['points'] == [[100.0, 200.0], [300.0, 150.0], [0.0, 100.0]]
    image, target = Expand2square()(item['image'], item['target'])
    assert image.size == (480, 480)  # 480x320: 80 rows of padding above
    norm = [norm_point_xy(p, 480, 480) for p in target['points']]
    expected = [[100 / 480, 280 / 480], [300 / 480, 230 / 480], [0.0, 180 / 480]]
    for got, want in zip(norm, expected):
        assert got == pytest.approx(want)
    text = PlainBoxFormatter()(item['conversations'][1]['value'], None, item['conversations'][1]['points_seq'],
                               None, norm)
    assert text.startswith('Find the red cubes [0.208,0.583]. Find the small spheres [0.625,0.479;0.000,0.375]. ')
    assert extract_answer(text) == '3'

    item = ds[1]  # the cylinder's centre lies on the right and bottom border
    assert item['target']['points'] == [[480.0, 319.0]]
    _, target = Expand2square()(item['image'], item['target'])
    assert norm_point_xy(target['points'][0], 480, 480) == pytest.approx([1.0, 399 / 480])


def test_reasoning_steps_without_points_has_no_placeholders():
    text, seq = reasoning_steps(RECORDS[4]['program'], with_points=False)
    assert '<points>' not in text and seq == []
    text, seq = reasoning_steps(RECORDS[4]['program'], with_points=True)
    assert text.count('<points>') == 2 and seq == [[0], [2]]


def test_unknown_version_and_bad_records(data, tmp_path):
    with pytest.raises(ValueError, match=r"unknown version 'q-bc'; valid versions: q-a, q-s, q-bs"):
        CLEVRDataset(data['jsonl'], data['images'], version='q-bc')

    path = tmp_path / 'noprogram.jsonl'
    path.write_text(json.dumps(RECORDS[0]) + '\n' + json.dumps({k: v for k, v in RECORDS[1].items()
                                                                 if k != 'program'}) + '\n')
    CLEVRDataset(str(path), data['images'], version='q-a')
    with pytest.raises(DataFileError, match=r"noprogram.jsonl:2: version q-s needs field\(s\) \['program'\]"):
        CLEVRDataset(str(path), data['images'], version='q-s')

    path = tmp_path / 'index.jsonl'
    path.write_text(json.dumps(dict(RECORDS[1], points=POINTS[:2])) + '\n')
    with pytest.raises(DataFileError, match=r'index.jsonl:1: program refers to object\(s\) \[2\] but the record has 2'):
        CLEVRDataset(str(path), data['images'], version='q-bs')[0]

    path = tmp_path / 'malformed.jsonl'
    path.write_text(json.dumps(dict(RECORDS[1], program=[{'function': 'scene'}])) + '\n')
    with pytest.raises(DataFileError, match=r'malformed.jsonl:1: malformed program'):
        CLEVRDataset(str(path), data['images'], version='q-s')[0]

    path = tmp_path / 'noquestion.jsonl'
    path.write_text(json.dumps({k: v for k, v in RECORDS[0].items() if k != 'question'}) + '\n')
    with pytest.raises(DataFileError, match=r'noquestion.jsonl:1: missing field'):
        CLEVRDataset(str(path), data['images'], version='q-a')

    with pytest.raises(DataFileError, match='image_folder'):
        CLEVRDataset(data['jsonl'], str(tmp_path / 'nowhere'), version='q-a')


def test_default_templates(data):
    for version, name in (('q-a', 'CLEVR.json'), ('q-s', 'CLEVR_CoT.json'), ('q-bs', 'CLEVR_PCoT.json')):
        ds = CLEVRDataset(data['jsonl'], data['images'], version=version)
        assert ds.templates.path.endswith('/' + name) and len(ds.templates.templates) >= 5


# -- Shikra's CLEVR_val_questions_with_ans.jsonl + CLEVR_val_scenes.jsonl --------------------------------------
def with_ans(step_node, ans):
    return dict(step_node, ans=ans)


# A second scene (line 2 of the scenes file): a green cube and a yellow cylinder in CLEVR_val_000001.png.
SCENE_1 = dict(SCENES['scenes'][0], image_index=1, image_filename='CLEVR_val_000001.png',
               objects=[obj('green', 'large', 'cube', 'metal', [50, 60, 9.0]),
                        obj('yellow', 'small', 'cylinder', 'rubber', [400, 240, 8.0])],
               relationships={'right': [[1], []], 'behind': [[], [0]], 'front': [[1], []], 'left': [[], [0]]})
_Q = QUESTIONS['questions']
# Official questions whose program steps carry their results in `ans` (object indices, or the value);
# `unique` stores its index bare in one question and as a one-element list in the other.
SHIKRA_QUESTIONS = [
    dict(_Q[0], program=[with_ans(n, a) for n, a in zip(_Q[0]['program'],
                                                        [[0, 1, 2, 3], [1, 3], [1], [1], 1, [3], True])]),
    {'image_index': 1, 'image_filename': 'CLEVR_val_000001.png', 'question_index': 7, 'split': 'val',
     'question_family_index': 3, 'question': 'How many cylinders are there?', 'answer': 1,
     'program': [with_ans(node('scene'), [0, 1]), with_ans(node('filter_shape', [0], ['cylinder']), [1]),
                 with_ans(node('count', [1]), 1)]},
    dict(_Q[1], program=[with_ans(n, a) for n, a in zip(_Q[1]['program'],
                                                        [[0, 1, 2, 3], [0, 3], [0], [0], [1, 2], 2])]),
]


@pytest.fixture
def shikra(tmp_path):
    images = write_images(tmp_path / 'images' / 'val', {'CLEVR_val_000000.png': (480, 320),
                                                        'CLEVR_val_000001.png': (480, 320)},
                          color=(10, 200, 10, 255), mode='RGBA')
    return {'questions': write_jsonl(tmp_path / 'CLEVR_val_questions_with_ans.jsonl', SHIKRA_QUESTIONS),
            'scenes': write_jsonl(tmp_path / 'CLEVR_val_scenes.jsonl', [SCENES['scenes'][0], SCENE_1]),
            'images': str(images), 'root': tmp_path}


def shikra_ds(shikra, version, **kwargs):
    return CLEVRDataset(kwargs.pop('filename', shikra['questions']), shikra['images'], version=version,
                        scene_graph_file=kwargs.pop('scene_graph_file', shikra['scenes']), **kwargs)


def test_shikra_questions_with_scenes_by_line(shikra):
    bs = shikra_ds(shikra, 'q-bs')
    assert len(bs) == 3 and [bs[k]['source'] for k in range(3)] == [f"{shikra['questions']}:{n}" for n in (1, 2, 3)]
    # image_index 1 -> line 2 of the scenes file: the yellow cylinder at (400, 240)
    item = bs[1]
    assert item['conversations'][1]['value'] == 'Find the cylinders <points>. Counting them gives 1. The answer is 1.'
    assert item['conversations'][1]['points_seq'] == [[0]]
    assert item['target'] == {'boxes': [], 'points': [[400.0, 240.0]]}
    assert bs.meta(1) == {'question_index': 7, 'answer': '1'}
    # image_index 0 -> line 1; the red sphere's centre (-2, 100) lies outside the image and is clamped to x = 0
    item = bs[0]
    assert item['conversations'][1]['value'] == ('Find the small blue sphere <points>. Find the other objects with '
                                                 'the same shape as the small blue sphere <points>. So at least one '
                                                 'exists. The answer is yes.')
    assert item['target']['points'] == [[300.0, 150.0], [0.0, 100.0]]
    assert bs[2]['conversations'][1]['value'] == ('Find the red cube <points>. Find the objects right of the red cube '
                                                  '<points>. Counting them gives 2. The answer is 2.')
    for k in range(3):
        validate_item(bs[k], 'clevr shikra', k, image_size=(480, 320), box_tolerance=0)
    assert [gpt(shikra_ds(shikra, 'q-a'), k)[0] for k in range(3)] == [
        'The answer is yes.', 'The answer is 1.', 'The answer is 2.']
    assert gpt(shikra_ds(shikra, 'q-s'), 1)[0] == 'Find the cylinders. Counting them gives 1. The answer is 1.'


def test_shikra_layout_equals_the_converter_layout(shikra, data):
    """Question 0 read from Shikra's files renders as its converted record (test_prep_clevr's EXPECTED[0]) does."""
    ours = CLEVRDataset(data['jsonl'], data['images'], version='q-bs')[0]
    theirs = shikra_ds(shikra, 'q-bs')[0]
    assert theirs['conversations'] == ours['conversations'] and theirs['target'] == ours['target']


def test_shikra_layout_errors_name_file_and_line(shikra):
    root = shikra['root']

    def questions(records):
        return write_jsonl(root / 'bad_questions.jsonl', records)

    wrong_image = dict(SHIKRA_QUESTIONS[1], image_index=0)
    with pytest.raises(DataFileError, match=r'bad_questions.jsonl:2: image_index 0 is line 1 of .*CLEVR_val_scenes'
                                            r'.jsonl, the scene of CLEVR_val_000000.png, not of CLEVR_val_000001.png'):
        shikra_ds(shikra, 'q-a', filename=questions([SHIKRA_QUESTIONS[0], wrong_image]))
    with pytest.raises(DataFileError, match=r'bad_questions.jsonl:1: image_index 2 has no line in .* \(2 scenes\)'):
        shikra_ds(shikra, 'q-a', filename=questions([dict(SHIKRA_QUESTIONS[1], image_index=2)]))
    no_ans = dict(SHIKRA_QUESTIONS[1], program=[node('scene'), node('filter_shape', [0], ['cylinder']),
                                                node('count', [1])])
    path = questions([SHIKRA_QUESTIONS[0], no_ans])
    assert len(shikra_ds(shikra, 'q-a', filename=path)) == 2  # q-a reads no program
    with pytest.raises(DataFileError, match=r"bad_questions.jsonl:2: program step 0 needs 'function' and its result"):
        shikra_ds(shikra, 'q-s', filename=path)
    wrong_answer = dict(SHIKRA_QUESTIONS[1], answer=2)
    with pytest.raises(DataFileError, match=r"bad_questions.jsonl:1: the program's last step gives '1' but the "
                                            r"answer is '2'"):
        shikra_ds(shikra, 'q-bs', filename=questions([wrong_answer]))
    with pytest.raises(DataFileError, match=r'bad_questions.jsonl:1: a question of Shikra.*set scene_graph_file'):
        CLEVRDataset(questions(SHIKRA_QUESTIONS), shikra['images'], version='q-a')
    scenes = root / 'bad_scenes.jsonl'
    scenes.write_text(json.dumps(SCENES['scenes'][0]) + '\n' + json.dumps({'objects': [{'color': 'red'}]}) + '\n')
    with pytest.raises(DataFileError, match=r'bad_scenes.jsonl:2: expected a CLEVR scene with objects\[\]'):
        shikra_ds(shikra, 'q-a', scene_graph_file=str(scenes))
    with pytest.raises(DataFileError, match='scene_graph_file'):
        shikra_ds(shikra, 'q-a', scene_graph_file=str(root / 'nowhere.jsonl'))
