"""Tests for data validation and error messages naming the dataset, sample, file:line and config key."""
import json

import pytest

from mllm.config import ConfigError
from mllm.dataset.builder import build_conv_dataset
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.dataset.utils.io import DataFileError, read_image, read_jsonl
from mllm.dataset.validation import InvalidSampleError, validate_item


def item(boxes=((10, 5, 50, 40),), human='<image> Where is the circle?', gpt='Answer: <boxes> .',
         boxes_seq=((0,),), source='rec.jsonl:4', extra_turns=()):
    out = {'target': {'boxes': [list(b) for b in boxes]},
           'conversations': [{'from': 'human', 'value': human},
                             {'from': 'gpt', 'value': gpt, 'boxes_seq': [list(g) for g in boxes_seq]},
                             *extra_turns]}
    if source:
        out['source'] = source
    return out


def assert_fails(sample, *fragments, name='RefCOCO', index=3, image_size=(96, 64)):
    with pytest.raises(InvalidSampleError) as info:
        validate_item(sample, name, index, image_size=image_size)
    message = str(info.value)
    assert message.startswith(f'{name}[{index}]')
    if sample.get('source'):
        assert f"({sample['source']})" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_valid_item_passes():
    validate_item(item(), 'RefCOCO', 0, image_size=(96, 64))
    validate_item(item(boxes=((0, 0, 96, 64),)), 'RefCOCO', 0, image_size=(96, 64))
    validate_item(item(boxes=((-0.5, 0, 96.9, 64.5),)), 'RefCOCO', 0, image_size=(96, 64))  # within tolerance


def test_box_x1_less_than_x0():
    assert_fails(item(boxes=((50, 5, 10, 40),)), 'box 0', 'x1<x0')


def test_box_y1_less_than_y0_without_image_size():
    assert_fails(item(boxes=((10, 40, 50, 5),)), 'box 0', image_size=None)


def test_box_outside_image():
    assert_fails(item(boxes=((10, 5, 98, 40),)), 'outside', '96x64')
    assert_fails(item(boxes=((10, 5, 50, 66),)), 'outside')
    assert_fails(item(boxes=((-2, 5, 50, 40),)), 'outside')


def test_box_with_wrong_number_of_values():
    assert_fails(item(boxes=((10, 5, 50),)), '3 values')


def test_point_outside_image():
    sample = item()
    sample['target']['points'] = [[100, 10]]
    assert_fails(sample, 'point 0', 'outside')


def test_placeholder_count_mismatch():
    assert_fails(item(gpt='Answer: <boxes> and <boxes> .'), 'turn 1', '2 <boxes> placeholders', '1 groups')
    assert_fails(item(gpt='Answer: nothing .'), 'turn 1', '0 <boxes> placeholders')


def test_boxes_seq_index_out_of_range():
    assert_fails(item(boxes_seq=((1,),)), 'boxes[1]', 'the target has 1 boxes')


def test_image_placeholder_in_gpt_turn():
    assert_fails(item(gpt='<image> Answer: <boxes> .'), 'turn 1', '<image>')


def test_last_turn_must_be_gpt():
    sample = item(extra_turns=({'from': 'human', 'value': 'and now?'},))
    assert_fails(sample, 'last turn')


def test_unknown_role_and_empty_conversation():
    sample = item()
    sample['conversations'][0]['from'] = 'user'
    assert_fails(sample, "'user'")
    assert_fails({'conversations': []}, 'no conversations', image_size=None)


def test_message_without_source():
    message = assert_fails(item(boxes=((50, 5, 10, 40),), source=None), index=11)
    assert message.startswith('RefCOCO[11]: ')


def test_read_jsonl_malformed_line(tmp_path):
    path = tmp_path / 'file.jsonl'
    path.write_text('{"a": 1}\n\n{"a": 2,,}\n{"a": 3}\n')
    with pytest.raises(DataFileError) as info:
        read_jsonl(str(path))
    assert f'{path}:3' in str(info.value) and 'file.jsonl:3' in str(info.value)


def test_read_jsonl_records_source_and_non_object(tmp_path):
    path = tmp_path / 'ok.jsonl'
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    records = read_jsonl(str(path))
    assert [r['a'] for r in records] == [1, 2]
    assert [r['__source__'] for r in records] == [f'{path}:1', f'{path}:3']
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataFileError, match='ok.jsonl:2'):
        read_jsonl(str(path))
    with pytest.raises(DataFileError, match='not found'):
        read_jsonl(str(tmp_path / 'missing.jsonl'))


def test_read_image_errors(tmp_path):
    with pytest.raises(DataFileError, match='image not found'):
        read_image(str(tmp_path / 'none.png'))
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    with pytest.raises(Exception, match='bad.png'):
        read_image(str(bad))


def test_rec_missing_image_names_file_line_and_path(rec_data):
    jsonl = rec_data['root'] / 'missing.jsonl'
    jsonl.write_text(json.dumps({'img_path': 'wide.png', 'expression': 'x', 'bbox': [1, 1, 2, 2]}) + '\n'
                     + json.dumps({'img_path': 'ghost.png', 'expression': 'y', 'bbox': [1, 1, 2, 2]}) + '\n')
    ds = RECDataset(str(jsonl), rec_data['image_folder'])
    assert ds[0]['image'].size == (96, 64)
    with pytest.raises(DataFileError) as info:
        ds[1]
    message = str(info.value)
    assert f'{jsonl}:2' in message and 'ghost.png' in message and rec_data['image_folder'] in message


def test_rec_missing_image_folder(rec_data):
    folder = str(rec_data['root'] / 'no_such_folder')
    with pytest.raises(DataFileError, match='no_such_folder'):
        RECDataset(rec_data['jsonl'], folder)


def test_rec_record_missing_bbox(rec_data):
    jsonl = rec_data['root'] / 'nobbox.jsonl'
    jsonl.write_text(json.dumps({'img_path': 'wide.png', 'expression': 'x', 'bbox': [1, 1, 2, 2]}) + '\n'
                     + json.dumps({'img_path': 'wide.png', 'expression': 'y'}) + '\n')
    with pytest.raises(DataFileError) as info:
        RECDataset(str(jsonl), rec_data['image_folder'])
    assert f'{jsonl}:2' in str(info.value) and 'bbox' in str(info.value)


def test_rec_box_outside_image_through_conv_dataset(rec_data, preprocessor):
    jsonl = rec_data['root'] / 'outside.jsonl'
    jsonl.write_text(json.dumps({'img_path': 'wide.png', 'expression': 'x', 'bbox': [1, 1, 20, 20]}) + '\n'
                     + json.dumps({'img_path': 'wide.png', 'expression': 'y', 'bbox': [10, 10, 90, 80]}) + '\n')
    ds = SingleImageConvDataset(RECDataset(str(jsonl), rec_data['image_folder']), preprocessor, name='REC')
    assert ds[0]['input_ids'].ndim == 1
    with pytest.raises(InvalidSampleError) as info:
        ds[1]
    message = str(info.value)
    assert message.startswith('REC[1]') and f'{jsonl}:2' in message and '96x64' in message


def test_builder_dataset_type_typo(rec_data, family):
    cfg = dict(type='RECDatset', filename=rec_data['jsonl'], image_folder=rec_data['image_folder'])
    with pytest.raises(ConfigError) as info:
        build_conv_dataset(cfg, family, {}, 'train', 'data_args.train')
    assert "data_args.train.type: 'RECDatset'" in str(info.value)
    assert "Did you mean 'RECDataset'?" in str(info.value)


def test_builder_argument_typo(rec_data, family):
    cfg = dict(type='RECDataset', filename=rec_data['jsonl'], image_foldr=rec_data['image_folder'])
    with pytest.raises(ConfigError) as info:
        build_conv_dataset(cfg, family, {}, 'train', 'data_args.train')
    assert "no argument 'image_foldr'" in str(info.value)
    assert "Did you mean 'image_folder'?" in str(info.value)


def test_builder_mixture_child_typo_names_path(rec_data, family):
    good = dict(type='RECDataset', filename=rec_data['jsonl'], image_folder=rec_data['image_folder'])
    cfg = dict(type='ConcatDataset', cfgs=[good, dict(good, type='RECDatset')])
    with pytest.raises(ConfigError, match=r'data_args\.train\.cfgs\[1\]\.type'):
        build_conv_dataset(cfg, family, {}, 'train', 'data_args.train')


def test_builder_builds_named_dataset(rec_data, family):
    cfg = dict(type='RECDataset', filename=rec_data['jsonl'], image_folder=rec_data['image_folder'])
    ds = build_conv_dataset(cfg, family, {'transform': dict(type='Expand2square')}, 'eval', 'data_args.test')
    assert isinstance(ds, SingleImageConvDataset) and ds.mode == 'eval'
    assert ds.name == 'RECDataset(rec.jsonl)' and len(ds) == 3
    assert family.tokenizer.decode(ds[0]['labels']) == 'Answer: [0.104,0.219,0.521,0.583] .'
