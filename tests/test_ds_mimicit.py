"""MIMICITDataset on fixtures in Otter's MIMIC-IT layout: `*_instructions.json` ({meta, data}), the flat base64
images JSON (PNG, JPEG and RGBA payloads; parquet when pyarrow is installed) and `*_train.json`; unicode text.
Every fixture image is one solid colour, so the order of the media is read from their pixels."""
import base64
import io
import json
import sys

import pytest
from PIL import Image

from mllm.config import ConfigError
from mllm.dataset.builder import build_raw_dataset
from mllm.dataset.multi_image_dataset import mimicit
from mllm.dataset.multi_image_dataset.mimicit import MIMICITDataset, decode_image
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.validation import validate_item
from tests.helpers import write_json

RED, GREEN, BLUE = (200, 30, 40), (20, 160, 90), (40, 60, 220)
FRAMES = [(10, 10, 10), (70, 70, 70), (130, 130, 130), (190, 190, 190)]
WHITE = (255, 255, 255)


def payload(colour, fmt='PNG', mode='RGB', transparent_corner=False, size=(8, 6)) -> str:
    """A solid-colour image encoded as Otter's converter encodes it: image bytes -> standard base64."""
    image = Image.new(mode, size, colour)
    if transparent_corner:
        image.putpixel((0, 0), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({'quality': 95} if fmt == 'JPEG' else {}))
    return base64.b64encode(buffer.getvalue()).decode('ascii')


IMAGES = {
    'LA_IMG_000000000001': payload(RED),                                    # PNG
    'LA_IMG_000000000002': payload(GREEN, 'JPEG'),                          # JPEG
    'LA_IMG_000000000003': payload((*BLUE, 255), 'PNG', 'RGBA', True),     # RGBA, top-left pixel transparent
    **{f'DC_IMG_v_N1c3C_Npr-E_{k:04d}': payload(c) for k, c in enumerate(FRAMES)},
}
LA = {
    'meta': {'version': '0.0.1', 'time': '2023-06', 'author': 'ntu'},
    'data': {
        'LA_INS_00001': {'instruction': 'What colour is the sign? 🚦', 'answer': 'Red — like « rouge ».',
                         'image_ids': ['LA_IMG_000000000001'], 'rel_ins_ids': ['LA_INS_00002', 'LA_INS_00003']},
        'LA_INS_00002': {'instruction': 'Describe the scene in 中文.', 'answer': '一片绿色的草地。',
                         'image_ids': ['LA_IMG_000000000002'], 'rel_ins_ids': ['LA_INS_00001']},
        'LA_INS_00003': {'instruction': '  Is the sky clear?\r\n', 'answer': 'Yes, it is cloudless.\r\nVery blue. ',
                         'image_ids': ['LA_IMG_000000000003'], 'rel_ins_ids': []},
        'LA_INS_00004': {'instruction': 'What differs between the two pictures?',
                         'answer': 'The first is red, the second green.',
                         'image_ids': ['LA_IMG_000000000001', 'LA_IMG_000000000002'],
                         'rel_ins_ids': ['LA_INS_00001', 'LA_INS_00002', 'LA_INS_00003']},
    },
}
DC_FRAMES = [f'DC_IMG_v_N1c3C_Npr-E_{k:04d}' for k in range(4)]
DC = {
    'meta': {'version': '0.0.1', 'time': '2023-06', 'author': 'ntu'},
    'data': {
        'DC_INS_00001': {'instruction': 'Who is the main focus of the video?',
                         'answer': 'A police officer riding a horse.', 'image_ids': DC_FRAMES,
                         'rel_ins_ids': ['DC_INS_00002']},
        'DC_INS_00002': {'instruction': 'What does the horse do?', 'answer': 'It walks down the street.',
                         'image_ids': DC_FRAMES, 'rel_ins_ids': ['DC_INS_00001']},
    },
}


def turn(role, value, in_context=False):
    return {'from': role, 'value': value, 'boxes_seq': None, 'points_seq': None,
            **({'in_context': True} if in_context else {})}


@pytest.fixture
def files(tmp_path):
    return {'la': write_json(tmp_path / 'LA' / 'LADD_instructions.json', LA, indent=4),
            'dc': write_json(tmp_path / 'DC' / 'DC_instructions.json', DC),
            'images': write_json(tmp_path / 'LA.json', IMAGES), 'root': tmp_path}


def colour(image, xy=(4, 3)):
    return image.getpixel(xy)


def close(rgb, expected, tol=4):  # JPEG moves a solid colour by a unit or two
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected))


def edit(obj, fn):
    obj = json.loads(json.dumps(obj))
    fn(obj)
    return obj


# -- items -----------------------------------------------------------------------------------------
def test_query_after_its_in_context_examples_exact_text_and_media(files):
    ds = DATASETS.build(dict(type='MIMICITDataset', instructions_file=files['la'], images_file=files['images']))
    assert len(ds) == 4
    item = ds[0]
    assert item['source'] == f"{files['la']}:LA_INS_00001"
    assert item['target'] == {}
    assert item['conversations'] == [
        turn('human', '<image>Describe the scene in 中文.', True),
        turn('gpt', '一片绿色的草地。', True),
        turn('human', '<image>Is the sky clear?', True),
        turn('gpt', 'Yes, it is cloudless.\nVery blue.', True),
        turn('human', '<image>What colour is the sign? 🚦'),
        turn('gpt', 'Red — like « rouge ».'),
    ]
    green, blue, red = item['image']
    assert all(isinstance(im, Image.Image) and im.mode == 'RGB' and im.size == (8, 6) for im in item['image'])
    assert close(colour(green), GREEN) and colour(red) == RED and colour(blue) == BLUE
    assert colour(blue, (0, 0)) == WHITE  # the transparent pixel is composited on white
    assert ds.meta(0) == {'ins_id': 'LA_INS_00001', 'in_context_ids': ['LA_INS_00002', 'LA_INS_00003']}
    validate_item(item, 'mimicit', 0)


def test_multi_image_instruction_has_one_media_per_image(files):
    ds = MIMICITDataset(files['la'], files['images'], num_in_context=0)
    item = ds[3]
    assert item['conversations'] == [turn('human', '<image><image>What differs between the two pictures?'),
                                     turn('gpt', 'The first is red, the second green.')]
    assert colour(item['image'][0]) == RED and close(colour(item['image'][1]), GREEN)
    # media='video' makes the same two images the frames of one media
    video = MIMICITDataset(files['la'], files['images'], num_in_context=0, media='video')[3]
    assert video['conversations'][0]['value'] == '<image>What differs between the two pictures?'
    assert len(video['image']) == 1 and colour(video['image'][0][0]) == RED


def test_video_instruction_is_one_media_of_frames_shared_by_its_examples(files):
    item = MIMICITDataset(files['dc'], files['images'])[0]
    # The example asks about the query's own video: one <image>, as Otter writes DC prompts.
    assert item['conversations'] == [
        turn('human', '<image>What does the horse do?', True),
        turn('gpt', 'It walks down the street.', True),
        turn('human', 'Who is the main focus of the video?'),
        turn('gpt', 'A police officer riding a horse.'),
    ]
    (frames,) = item['image']
    assert isinstance(frames, list) and [colour(f) for f in frames] == FRAMES

    separate = MIMICITDataset(files['dc'], files['images'], merge_repeated_media=False)[0]
    assert [t['value'][:7] for t in separate['conversations'][::2]] == ['<image>', '<image>']
    assert len(separate['image']) == 2 and all(len(m) == 4 for m in separate['image'])

    sub = MIMICITDataset(files['dc'], files['images'], max_frames=3)[0]
    assert [colour(f) for f in sub['image'][0]] == [FRAMES[0], FRAMES[1], FRAMES[3]]  # 0, 3//2, 6//2
    one = MIMICITDataset(files['dc'], files['images'], max_frames=1)[0]
    assert [colour(f) for f in one['image'][0]] == [FRAMES[0]]

    as_images = MIMICITDataset(files['dc'], files['images'], media='images', num_in_context=0)[0]
    assert as_images['conversations'][0]['value'] == '<image>' * 4 + 'Who is the main focus of the video?'
    assert [colour(im) for im in as_images['image']] == FRAMES


def test_in_context_draw_is_seeded_by_seed_epoch_and_index(files):
    def draws(seed, epoch):
        ds = MIMICITDataset(files['la'], files['images'], num_in_context=1, seed=seed)
        ds.set_epoch(epoch)
        return ds.meta(3)['in_context_ids']

    candidates = ['LA_INS_00001', 'LA_INS_00002', 'LA_INS_00003']
    per_epoch = [draws(0, e) for e in range(12)]
    assert all(len(d) == 1 and d[0] in candidates for d in per_epoch)
    assert len({d[0] for d in per_epoch}) > 1                          # varies across epochs
    assert [draws(0, e) for e in range(12)] == per_epoch                # fixed for the same (seed, epoch, index)
    assert [draws(1, e) for e in range(12)] != per_epoch                # another seed, another sequence

    ds = MIMICITDataset(files['la'], files['images'], num_in_context=2)
    for epoch in range(6):
        ds.set_epoch(epoch)
        ids = ds.meta(3)['in_context_ids']
        assert len(ids) == 2 and ids == [c for c in candidates if c in ids]  # shown in the list's order
        item = ds[3]
        assert [t['value'] for t in item['conversations'] if t.get('in_context') and t['from'] == 'human'] == [
            '<image>' + LA['data'][i]['instruction'].strip() for i in ids]
    # fewer candidates than asked: all of them
    assert MIMICITDataset(files['la'], files['images'], num_in_context=5).meta(1)['in_context_ids'] == ['LA_INS_00001']


def test_train_config_chooses_queries_and_overrides_rel_ins_ids(files):
    train = write_json(files['root'] / 'LA' / 'LADD_train.json',
                       {'LA_INS_00003': ['LA_INS_00004', 'LA_INS_00001'], 'LA_INS_00001': []})
    ds = MIMICITDataset(files['la'], files['images'], train_config_file=train)
    assert len(ds) == 2
    assert [ds.meta(k) for k in range(2)] == [
        {'ins_id': 'LA_INS_00003', 'in_context_ids': ['LA_INS_00004', 'LA_INS_00001']},
        {'ins_id': 'LA_INS_00001', 'in_context_ids': []}]
    item = ds[0]
    assert [t['value'] for t in item['conversations'] if t['from'] == 'human'] == [
        '<image><image>What differs between the two pictures?', '<image>What colour is the sign? 🚦',
        '<image>Is the sky clear?']
    assert [colour(im) for im in item['image']][::2] == [RED, RED] and colour(item['image'][3]) == BLUE
    assert ds[1]['conversations'] == [turn('human', '<image>What colour is the sign? 🚦'),
                                      turn('gpt', 'Red — like « rouge ».')]


def test_max_num_media_drops_the_farthest_examples(files):
    ds = MIMICITDataset(files['la'], files['images'], max_num_media=3)
    assert ds.meta(3)['in_context_ids'] == ['LA_INS_00003']  # 1 + 2 query media = 3
    assert len(ds[3]['image']) == 3
    with pytest.raises(DataFileError, match=r"_instructions\.json:LA_INS_00004: 2 media, more than max_num_media=1"):
        MIMICITDataset(files['la'], files['images'], max_num_media=1)


def test_meta_reads_no_image(files, monkeypatch):
    def no_decoding(payload):
        raise AssertionError('meta() decoded an image')

    ds = MIMICITDataset(files['la'], files['images'], num_in_context=1)
    monkeypatch.setattr(mimicit, 'decode_image', no_decoding)
    assert [ds.meta(k)['ins_id'] for k in range(len(ds))] == ['LA_INS_00001', 'LA_INS_00002', 'LA_INS_00003',
                                                              'LA_INS_00004']
    with pytest.raises(AssertionError, match='decoded an image'):  # the patch is the decoder __getitem__ uses
        ds[0]


def test_decoder_modes():
    lossless = decode_image(base64.urlsafe_b64encode(base64.b64decode(IMAGES['LA_IMG_000000000001'])).decode())
    assert colour(lossless) == RED
    palette = Image.new('P', (2, 1))
    palette.putpalette([0, 0, 0, 9, 8, 7] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info['transparency'] = 0
    buffer = io.BytesIO()
    palette.save(buffer, format='PNG', transparency=0)
    image = decode_image(base64.b64encode(buffer.getvalue()).decode())
    assert image.mode == 'RGB' and [image.getpixel((x, 0)) for x in range(2)] == [WHITE, (9, 8, 7)]
    gray_alpha = Image.new('LA', (1, 1), (50, 0))
    buffer = io.BytesIO()
    gray_alpha.save(buffer, format='PNG')
    assert decode_image(base64.b64encode(buffer.getvalue()).decode()).getpixel((0, 0)) == WHITE


def test_subsets_sharing_an_images_file_read_it_once(files):
    first, second = MIMICITDataset(files['la'], files['images']), MIMICITDataset(files['dc'], files['images'])
    assert first.payloads is second.payloads  # LADD and LACR_T2T share LA.json / LA.parquet in Otter's layout


# -- bad inputs ------------------------------------------------------------------------------------
def test_missing_files_name_the_argument_and_the_root(files, tmp_path):
    with pytest.raises(MissingDataPathError, match=r'instructions_file: file not found: .*nowhere\.json'):
        MIMICITDataset(str(tmp_path / 'nowhere.json'), files['images'])
    with pytest.raises(MissingDataPathError, match=r'images_file: file not found: .*LA\.parquet'):
        MIMICITDataset(files['la'], str(tmp_path / 'LA.parquet'))
    with pytest.raises(MissingDataPathError, match=r'train_config_file: file not found'):
        MIMICITDataset(files['la'], files['images'], train_config_file=str(tmp_path / 'LADD_train.json'))
    cfg = dict(type='MIMICITDataset', instructions_file='{mimicit}/SD/SD_instructions.json',
               images_file='{mimicit}/SD.json')
    with pytest.raises(ConfigError, match=r'data_args\.train\.instructions_file: file not found: '
                                          r'.*SD_instructions\.json.*data_args\.roots\.mimicit='):
        build_raw_dataset(cfg, {'mimicit': str(tmp_path / 'mimicit')}, 'data_args.train')


def test_missing_image_id_names_instruction_image_and_file(files):
    images = write_json(files['root'] / 'LA_missing.json',
                        {k: v for k, v in IMAGES.items() if k != 'LA_IMG_000000000002'})
    with pytest.raises(DataFileError) as e:
        MIMICITDataset(files['la'], images)
    assert str(e.value) == (f"{files['la']}:LA_INS_00002: image id 'LA_IMG_000000000002' is not in "
                            f"images_file {images}")
    with pytest.raises(DataFileError, match=r'LA_INS_00001: has image .* but no images_file'):
        MIMICITDataset(files['la'])


@pytest.mark.parametrize('bad, reason', [('@@not base64@@', 'not valid base64'),
                                         (base64.b64encode(b'hello, world').decode(), 'not a readable image'),
                                         (IMAGES['LA_IMG_000000000003'][:60], 'not a readable image')])
def test_bad_payload_names_instruction_image_and_file(files, bad, reason):
    images = write_json(files['root'] / 'LA_bad.json', dict(IMAGES, LA_IMG_000000000003=bad))
    ds = MIMICITDataset(files['la'], images)  # payloads are decoded when their item is built
    with pytest.raises(DataFileError) as e:
        ds[2]
    assert str(e.value).startswith(f"{files['la']}:LA_INS_00003: image id 'LA_IMG_000000000003' in images_file "
                                   f"{images}: {reason}")
    with pytest.raises(DataFileError, match=r':LA_INS_00003 \(in-context example of LA_INS_00001\): image id'):
        ds[0]


@pytest.mark.parametrize('fn, message', [
    (lambda d: d['data']['LA_INS_00002'].pop('answer'), r":LA_INS_00002: missing field\(s\) \['answer'\]"),
    (lambda d: d['data']['LA_INS_00003'].pop('image_ids'), r":LA_INS_00003: missing field\(s\) \['image_ids'\]"),
    (lambda d: d['data']['LA_INS_00001'].update(image_ids='LA_IMG_000000000001'),
     r":LA_INS_00001: 'image_ids' must be a list of id strings, got 'LA_IMG_000000000001'"),
    (lambda d: d['data']['LA_INS_00001'].update(rel_ins_ids=[2]), r":LA_INS_00001: 'rel_ins_ids' must be a list"),
    (lambda d: d['data']['LA_INS_00004'].update(instruction='  \n'),
     r":LA_INS_00004: 'instruction' must be a non-empty string"),
    (lambda d: d['data']['LA_INS_00002'].update(answer=''), r":LA_INS_00002: 'answer' must be a non-empty string"),
    (lambda d: d['data']['LA_INS_00003'].update(rel_ins_ids=['LA_INS_09999']),
     r":LA_INS_00003: in-context id 'LA_INS_09999' is not in .*LADD_instructions\.json \(unknown_in_context='skip'"),
    (lambda d: d['data'].update(LA_INS_00005=['not', 'an', 'object']), r":LA_INS_00005: expected an object"),
    (lambda d: d.pop('data'), r"LADD_instructions\.json: expected \{\"meta\""),
])
def test_bad_instructions_name_file_and_ins_id(files, fn, message):
    path = write_json(files['root'] / 'LA' / 'LADD_instructions.json', edit(LA, fn))
    with pytest.raises(DataFileError, match=message) as e:
        MIMICITDataset(path, files['images'])
    assert str(e.value).startswith(path)


def test_unknown_ids(files, caplog):
    bad = write_json(files['root'] / 'LA' / 'LADD_train.json', {'LA_INS_00003': [], 'LA_INS_07777': []})
    with pytest.raises(DataFileError, match=r"LADD_train\.json: query id 'LA_INS_07777' is not in .*LADD_instructions"):
        MIMICITDataset(files['la'], files['images'], train_config_file=bad)
    bad = write_json(files['root'] / 'LA' / 'LADD_train.json', {'LA_INS_00003': ['LA_INS_00001', 'LA_INS_08888']})
    with pytest.raises(DataFileError, match=r"LADD_train\.json:LA_INS_00003: in-context id 'LA_INS_08888' is not in"):
        MIMICITDataset(files['la'], files['images'], train_config_file=bad)
    ds = MIMICITDataset(files['la'], files['images'], train_config_file=bad, unknown_in_context='skip')
    assert ds.num_unknown_in_context == 1 and ds.meta(0)['in_context_ids'] == ['LA_INS_00001']
    assert "1 in-context id(s) not in the file were left out" in caplog.text
    bad = write_json(files['root'] / 'LA' / 'LADD_train.json', {'LA_INS_00003': 'LA_INS_00001'})
    with pytest.raises(DataFileError, match=r"LADD_train\.json:LA_INS_00003: expected a list of in-context ins ids"):
        MIMICITDataset(files['la'], files['images'], train_config_file=bad)


def test_malformed_json_names_file_and_line(files):
    path = files['root'] / 'LA' / 'broken_instructions.json'
    path.write_text('{"meta": {},\n "data": {"LA_INS_00001": {"instruction": "x",}}}', encoding='utf-8')
    with pytest.raises(DataFileError, match=r'broken_instructions\.json:2: not valid JSON'):
        MIMICITDataset(str(path), files['images'])
    images = write_json(files['root'] / 'list.json', ['LA_IMG_000000000001'])
    with pytest.raises(DataFileError, match=r'list\.json: expected a JSON object \{image_id: base64 string\}'):
        MIMICITDataset(files['la'], images)


def test_parquet_without_pyarrow_says_which_package(files, monkeypatch):
    path = files['root'] / 'LA.parquet'
    path.write_bytes(b'PAR1' + b'\0' * 16 + b'PAR1')
    monkeypatch.setitem(sys.modules, 'pyarrow', None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, 'pyarrow.parquet', None)
    with pytest.raises(ImportError, match=r'LA\.parquet is a parquet file; reading it needs pyarrow '
                                          r'\(pip install pyarrow\)'):
        MIMICITDataset(files['la'], str(path))


def test_bad_options_are_refused(files):
    with pytest.raises(ValueError, match=r"media must be one of \['auto', 'video', 'images'\], got 'frames'"):
        MIMICITDataset(files['la'], files['images'], media='frames')
    with pytest.raises(ValueError, match='num_in_context must be None or an integer >= 0'):
        MIMICITDataset(files['la'], files['images'], num_in_context=-1)
    with pytest.raises(IndexError):
        MIMICITDataset(files['la'], files['images'])[4]


# -- parquet (Otter's images.parquet), only where pyarrow is installed ---------------------------------
def _pandas_metadata(index_name):
    """The b'pandas' schema metadata pandas/dask write: the DataFrame index (image ids) stored as a column."""
    columns = [{'name': 'base64', 'field_name': 'base64', 'pandas_type': 'unicode', 'numpy_type': 'object',
                'metadata': None},
               {'name': None, 'field_name': index_name, 'pandas_type': 'unicode', 'numpy_type': 'object',
                'metadata': None}]
    return {b'pandas': json.dumps({'index_columns': [index_name], 'column_indexes': [], 'columns': columns,
                                   'pandas_version': '2.1.1'}).encode()}


def test_parquet_images_file_and_partitioned_folder(files):
    pa = pytest.importorskip('pyarrow')
    pq = pytest.importorskip('pyarrow.parquet')
    ids, values = list(IMAGES), list(IMAGES.values())

    def table(index_name, rows):
        t = pa.table({'base64': [values[i] for i in rows], index_name: [ids[i] for i in rows]})
        return t.replace_schema_metadata(_pandas_metadata(index_name))

    single = files['root'] / 'LA.parquet'
    pq.write_table(table('__index_level_0__', range(len(ids))), single)
    folder = files['root'] / 'LA_dask.parquet'  # dask's to_parquet: a folder of part files
    folder.mkdir()
    pq.write_table(table('__null_dask_index__', range(0, 3)), folder / 'part.0.parquet')
    pq.write_table(table('__null_dask_index__', range(3, len(ids))), folder / 'part.1.parquet')
    for images in (single, folder):
        item = MIMICITDataset(files['la'], str(images))[0]
        assert [t['value'] for t in item['conversations']][-2:] == ['<image>What colour is the sign? 🚦',
                                                                     'Red — like « rouge ».']
        assert colour(item['image'][2]) == RED and colour(item['image'][1]) == BLUE
        video = MIMICITDataset(files['dc'], str(images))[0]
        assert [colour(f) for f in video['image'][0]] == FRAMES

    no_ids = files['root'] / 'noids.parquet'
    pq.write_table(pa.table({'base64': values}), no_ids)
    with pytest.raises(DataFileError, match=r"noids\.parquet: no image-id column"):
        MIMICITDataset(files['la'], str(no_ids))


# -- rendering (the render table's case for this dataset) -----------------------------------------
def test_in_context_episode_renders_each_image_at_its_place_with_loss_on_the_query_only(files, family):
    from mllm.dataset.process_function.conv_template import get_conv_template
    from mllm.dataset.root import IGNORE_INDEX
    from tests.helpers import label_runs

    raw = DATASETS.build(dict(type='MIMICITDataset', instructions_file=files['la'], images_file=files['images']))
    text, _, _ = get_conv_template('otter').render(raw[0]['conversations'])
    assert text == ('<image>User: Describe the scene in 中文. GPT:<answer> 一片绿色的草地。<|endofchunk|>'
                    '<image>User: Is the sky clear? GPT:<answer> Yes, it is cloudless.\nVery blue.<|endofchunk|>'
                    '<image>User: What colour is the sign? 🚦 GPT:<answer> Red — like « rouge ».<|endofchunk|>')
    sample = family.render(raw, 'train', 'LADD')[0]
    tok = family.tokenizer
    image_id = tok.convert_tokens_to_ids('<image>')
    assert sample['pixel_values'].shape[0] == 3  # one processed image per media, in order
    assert int((sample['input_ids'] == image_id).sum()) == 3 * family.num_image_tokens
    runs = label_runs(sample['labels'])
    assert [tok.decode(sample['input_ids'][r]) for r in runs] == [' Red — like « rouge ».</s>']
    assert (sample['labels'][:runs[0][0]] == IGNORE_INDEX).all()
