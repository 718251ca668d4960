"""LLaVAInstructDataset on fixtures in the official llava_instruct_150k / mix665k layout (one JSON array) and in
Shikra's llava_instruct_150k.jsonl layout (one sample a line, bare COCO file names); text-only samples."""
import json
import logging

import pytest

from mllm.dataset.process_function.conv_template import get_conv_template
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.instruct import LLaVAInstructDataset
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.utils.transform import CLIP_MEAN_COLOR
from mllm.dataset.validation import validate_item
from tests.helpers import write_images, write_json, write_jsonl

SAMPLES = [
    {'id': '000000033471', 'image': '000000033471.jpg', 'conversations': [
        {'from': 'human', 'value': 'What are the colors of the bus in the image?\n<image>'},
        {'from': 'gpt', 'value': 'The bus in the image is white and red.'},
        {'from': 'human', 'value': 'What feature can be seen on the back of the bus?'},
        {'from': 'gpt', 'value': 'The back of the bus features an advertisement — « Café & Crème ».'},
    ]},
    {'id': 'i6IyJda_0', 'model': '', 'conversations': [  # text-only ShareGPT sample: no 'image' key
        {'from': 'human', 'value': 'How to get result of python multiprocessing.Process'},
        {'from': 'gpt', 'value': 'Use a multiprocessing.Queue or a Pool.'},
    ]},
    {'id': '9', 'image': 'coco/train2017/000000000009.jpg', 'conversations': [
        {'from': 'human', 'value': '<image>\nWhat is in the bowls?'},
        {'from': 'gpt', 'value': 'Fruit and broccoli.'},
    ]},
]
IMAGES = {'000000033471.jpg': (100, 60), 'coco/train2017/000000000009.jpg': (30, 45)}


@pytest.fixture
def llava(tmp_path):
    root = write_images(tmp_path / 'data', IMAGES, color=lambda k: ((5, 6, 7), (9, 9, 9))[k], quality=95)
    return {'file': write_json(tmp_path / 'llava_v1_5_mix665k.json', SAMPLES, indent=1), 'images': str(root),
            'root': tmp_path}


def test_image_samples_keep_every_turn(llava, caplog):
    with caplog.at_level(logging.INFO):
        ds = DATASETS.build(dict(type='LLaVAInstructDataset', filename=llava['file'], image_folder=llava['images'],
                                 text_only='skip'))
    assert len(ds) == 2 and ds.num_text_only == 1
    assert '1 text-only sample(s) skipped' in caplog.text
    assert [ds[k]['source'] for k in range(2)] == [f"{llava['file']}:#0", f"{llava['file']}:#2"]
    first = ds[0]
    validate_item(first, 'llava', 0, image_size=first['image'].size)
    assert first['image'].size == (100, 60)
    # LLaVA moves the image to the front of its turn; the text is otherwise kept
    assert [(t['from'], t['value']) for t in first['conversations']] == [
        ('human', '<image>\nWhat are the colors of the bus in the image?'),
        *[(t['from'], t['value']) for t in SAMPLES[0]['conversations'][1:]]]
    assert ds[1]['conversations'][0]['value'] == SAMPLES[2]['conversations'][0]['value']  # already in front
    assert all(t['boxes_seq'] is None and t['points_seq'] is None for t in first['conversations'])
    assert first['target'] == {'boxes': [], 'points': []}
    # Both assistant turns are trained on: the template marks two answer spans.
    text, spans, _ = get_conv_template('vicuna_v1.1').render(first['conversations'])
    assert [text[s:e] for s, e in spans] == [
        'The bus in the image is white and red.</s>',
        'The back of the bus features an advertisement — « Café & Crème ».</s>']
    assert ds[1]['image'].size == (30, 45)
    assert ds.meta(0) == {'id': '000000033471', 'image': '000000033471.jpg', 'num_turns': 4}


def test_text_only_samples_are_kept_without_an_image_by_default(llava, caplog):
    with caplog.at_level(logging.INFO):
        ds = LLaVAInstructDataset(llava['file'], llava['images'])
    assert ds.text_only == 'keep' and len(ds) == 3 and ds.num_text_only == 1
    assert '1 text-only sample(s) kept as text-only items' in caplog.text
    item = ds[1]
    validate_item(item, 'llava', 1)
    # Zero images, no placeholder anywhere, nothing to ground: the conversation exactly as in the file.
    assert item == {
        'image': [],
        'target': {'boxes': [], 'points': []},
        'conversations': [
            {'from': 'human', 'value': 'How to get result of python multiprocessing.Process', 'boxes_seq': None,
             'points_seq': None},
            {'from': 'gpt', 'value': 'Use a multiprocessing.Queue or a Pool.', 'boxes_seq': None, 'points_seq': None},
        ],
        'source': f"{llava['file']}:#1",
    }
    assert ds.meta(1) == {'id': 'i6IyJda_0', 'image': None, 'num_turns': 2}
    # The samples with an image are unchanged.
    assert ds[0]['image'].size == (100, 60) and ds[2]['image'].size == (30, 45)
    # A text-only sample that still asks about an image is an error, not a silently dropped placeholder.
    bad = dict(SAMPLES[1], conversations=[{'from': 'human', 'value': '<image>\nWhat is this?'},
                                          {'from': 'gpt', 'value': 'A cat.'}])
    path = write_json(llava['root'] / 'bad.json', [SAMPLES[0], bad])
    with pytest.raises(DataFileError, match=r'bad\.json:#1: 1 <image> placeholder\(s\) for a text-only sample'):
        LLaVAInstructDataset(path, llava['images'])


def test_text_only_with_blank_image(llava):
    ds = LLaVAInstructDataset(llava['file'], llava['images'], text_only='blank')
    assert len(ds) == 3 and ds.num_text_only == 1
    item = ds[1]
    validate_item(item, 'llava', 1, image_size=item['image'].size)
    assert item['image'].size == (336, 336) and item['image'].getpixel((0, 0)) == CLIP_MEAN_COLOR
    assert item['conversations'][0]['value'] == SAMPLES[1]['conversations'][0]['value']
    assert ds.meta(1)['image'] is None
    with pytest.raises(ValueError, match="text_only must be one of"):
        LLaVAInstructDataset(llava['file'], llava['images'], text_only='drop')


@pytest.mark.parametrize('sample, message', [
    ({'id': 'x', 'image': 'a.jpg', 'conversations': [{'from': 'user', 'value': 'hi'}]}, r'turn 0 must be'),
    ({'id': 'x', 'image': 'a.jpg', 'conversations': []}, r"'conversations' must be a non-empty list"),
    ({'id': 'x', 'image': 'a.jpg'}, r"'conversations' must be a non-empty list"),
    ({'id': 'x', 'image': 'a.jpg', 'conversations': [{'from': 'human', 'value': '<image> hi'}]},
     r'a conversation must start with a human turn and end with a gpt turn'),
    ({'id': 'x', 'image': 'a.jpg', 'conversations': [{'from': 'human', 'value': '<image> <image> hi'},
                                                     {'from': 'gpt', 'value': 'ok'}]},
     r'2 <image> placeholder\(s\) for one image'),
])
def test_malformed_sample_names_file_and_index(llava, sample, message):
    path = write_json(llava['root'] / 'bad.json', [SAMPLES[0], sample], indent=1)
    with pytest.raises(DataFileError, match=r'bad\.json:#1: ' + message):
        LLaVAInstructDataset(path, llava['images'])


def test_bad_files(llava):
    path = llava['root'] / 'bad.json'
    path.write_text(json.dumps({'id': 'x'}))
    with pytest.raises(DataFileError, match='expected a JSON array'):
        LLaVAInstructDataset(str(path), llava['images'])
    path.write_text('[\n{"id": 1,\n')
    with pytest.raises(DataFileError, match=r'bad\.json:3: not valid JSON'):
        LLaVAInstructDataset(str(path), llava['images'])
    missing = write_json(llava['root'] / 'missing.json', [dict(SAMPLES[2], image='coco/train2017/nope.jpg')],
                         indent=1)
    ds = LLaVAInstructDataset(missing, llava['images'])
    with pytest.raises(DataFileError, match=r'missing\.json:#0: image not found: .*nope\.jpg'):
        ds[0]


# Shikra's llava_instruct_150k.jsonl: the same samples, one a line, images named by their bare COCO-2017 file name.
SHIKRA_SAMPLES = [
    {'id': '000000033471', 'image': '000000033471.jpg', 'conversations': SAMPLES[0]['conversations']},
    {'id': '000000052846', 'image': '000000052846.jpg', 'conversations': [
        {'from': 'human', 'value': '<image>\nWhere is the cat?'}, {'from': 'gpt', 'value': 'On the sofa.'}]},
]


@pytest.fixture
def shikra_jsonl(tmp_path):
    images = write_images(tmp_path / 'train2017', {'000000033471.jpg': (100, 60), '000000052846.jpg': (64, 40)})
    return {'file': write_jsonl(tmp_path / 'llava_instruct_150k.jsonl', SHIKRA_SAMPLES), 'images': str(images),
            'root': tmp_path}


def test_shikra_jsonl_loads_as_it_is(shikra_jsonl):
    ds = LLaVAInstructDataset(shikra_jsonl['file'], shikra_jsonl['images'])
    assert len(ds) == 2 and ds.num_text_only == 0
    assert [ds[k]['source'] for k in range(2)] == [f"{shikra_jsonl['file']}:1", f"{shikra_jsonl['file']}:2"]
    assert ds[0]['conversations'][0]['value'] == '<image>\nWhat are the colors of the bus in the image?'
    assert [t['value'] for t in ds[1]['conversations']] == ['<image>\nWhere is the cat?', 'On the sofa.']
    assert ds[0]['image'].size == (100, 60) and ds[1]['image'].size == (64, 40)
    assert ds.meta(1) == {'id': '000000052846', 'image': '000000052846.jpg', 'num_turns': 2}
    # One sample on its only line is JSON Lines too (a whole-file parse sees one object).
    single = write_jsonl(shikra_jsonl['root'] / 'one.jsonl', SHIKRA_SAMPLES[1:])
    ds = LLaVAInstructDataset(single, shikra_jsonl['images'])
    assert len(ds) == 1 and ds[0]['source'] == f'{single}:1'


def test_shikra_jsonl_bad_line_names_file_and_line(shikra_jsonl):
    root = shikra_jsonl['root']
    bad_turn = dict(SHIKRA_SAMPLES[1], conversations=[{'from': 'human', 'value': 'hi'}])
    path = write_jsonl(root / 'bad.jsonl', [SHIKRA_SAMPLES[0], {'id': 'x'}, bad_turn])
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: 'conversations' must be a non-empty list"):
        LLaVAInstructDataset(path, shikra_jsonl['images'])
    path = write_jsonl(root / 'bad.jsonl', [SHIKRA_SAMPLES[0], bad_turn])
    with pytest.raises(DataFileError, match=r'bad\.jsonl:2: a conversation must start with a human turn'):
        LLaVAInstructDataset(path, shikra_jsonl['images'])
    lines = [json.dumps(SHIKRA_SAMPLES[0]), json.dumps(SHIKRA_SAMPLES[1]), '{"id": ']
    (root / 'bad.jsonl').write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataFileError, match=r'bad\.jsonl:3: not valid JSON'):
        LLaVAInstructDataset(str(root / 'bad.jsonl'), shikra_jsonl['images'])


def test_multi_turn_sample_through_the_conversation_pipeline(llava, preprocessor):
    from mllm.dataset.root import IGNORE_INDEX
    from mllm.dataset.single_image_conversation import SingleImageConvDataset

    raw = LLaVAInstructDataset(llava['file'], llava['images'])
    sample = SingleImageConvDataset(raw, preprocessor, transform=dict(type='Expand2square'))[0]
    labels = sample['labels']
    trained = preprocessor['text'].decode(labels[labels != IGNORE_INDEX])
    assert 'The bus in the image is white and red.' in trained and 'Café & Crème' in trained
    assert 'What feature' not in trained  # the second question is context, not a target
    image_id = preprocessor['text'].convert_tokens_to_ids('<image>')
    assert int((sample['input_ids'] == image_id).sum()) == preprocessor['num_image_tokens']
