"""ISEKAIDataset on a fixture in the published ISEKAI layout: an image folder and a JSON Lines file named .json
with image_name, positive_list, negative_list, positive_promt, negative_promt (sic), label_name. Every image is
one solid colour, unique per file name, so which image sits at which position is read from its pixels."""
import json

import pytest
from PIL import Image

from mllm.dataset.builder import build_raw_dataset  # noqa: F401  (registers every dataset)
from mllm.dataset.multi_image_dataset.isekai import ISEKAIDataset
from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.base import MissingDataPathError
from mllm.dataset.utils.io import DataFileError
from tests.helpers import write_jsonl

RECORDS = [
    {'image_name': 'cb_q.png', 'positive_list': ['cb_1.png', 'cb_2.png', 'cb_3.png'],
     'negative_list': ['ov_1.png', 'ov_2.png', 'ov_3.png'], 'positive_promt': 'Cactus boxer',
     'negative_promt': 'Octo-vacuum', 'label_name': 'Cactus boxer'},
    {'image_name': 'ov_q.png', 'positive_list': ['cb_1.png', 'cb_2.png'], 'negative_list': ['ov_1.png', 'ov_2.png'],
     'positive_promt': 'Cactus boxer', 'negative_promt': 'Octo-vacuum', 'label_name': 'octo-vacuum'},
    {'image_name': 'gt_q.png', 'positive_list': ['gt_1.png', 'gt_2.png'], 'negative_list': ['cb_3.png', 'cb_2.png'],
     'positive_promt': 'Glass turtle', 'negative_promt': 'Cactus boxer', 'label_name': 'Glass turtle'},
]
NAMES = sorted({n for r in RECORDS for n in [r['image_name'], *r['positive_list'], *r['negative_list']]})
COLOUR = {name: (10 * k + 5, 200 - 10 * k, 7 * k) for k, name in enumerate(NAMES)}
BY_COLOUR = {c: n for n, c in COLOUR.items()}
CONCEPT = {'cb': 'Cactus boxer', 'ov': 'Octo-vacuum', 'gt': 'Glass turtle'}
SUPPORT_Q = '<image>What is shown in this image?'
QUERY_Q = '<image>Going by the examples above, what is shown in this image?'


@pytest.fixture
def isekai(tmp_path):
    folder = tmp_path / 'ISEKAI-10'
    folder.mkdir()
    for name, colour in COLOUR.items():
        Image.new('RGB', (6, 4), colour).save(folder / name)
    return {'data_file': write_jsonl(tmp_path / 'isekai10.json', RECORDS), 'image_folder': str(folder)}


def names_of(item):
    return [BY_COLOUR[image.getpixel((0, 0))] for image in item['image']]


def test_two_way_two_shot_exact_prompts_and_order(isekai):
    ds = ISEKAIDataset(**isekai, shot=2, seed=1)
    assert len(ds) == 3
    item = ds[0]
    files = names_of(item)
    conv = item['conversations']
    assert len(item['image']) == 5 and len(conv) == 10
    # the first two images of each list, in some order, then the query
    assert sorted(files[:4]) == ['cb_1.png', 'cb_2.png', 'ov_1.png', 'ov_2.png'] and files[4] == 'cb_q.png'
    for k, name in enumerate(files[:4]):
        assert conv[2 * k] == {'from': 'human', 'value': SUPPORT_Q, 'boxes_seq': None, 'points_seq': None,
                               'in_context': True}
        assert conv[2 * k + 1] == {'from': 'gpt', 'value': f'There is "{CONCEPT[name[:2]]}" in the image.',
                                   'boxes_seq': None, 'points_seq': None, 'in_context': True}
    assert conv[8] == {'from': 'human', 'value': QUERY_Q, 'boxes_seq': None, 'points_seq': None}
    assert conv[9] == {'from': 'gpt', 'value': 'There is "Cactus boxer" in the image.', 'boxes_seq': None,
                       'points_seq': None}
    assert item['target'] == {} and item['source'] == f"{isekai['data_file']}:1:cb_q.png"
    assert ds.meta(0) == {'positive': 'Cactus boxer', 'negative': 'Octo-vacuum', 'negatives': ['Octo-vacuum'],
                          'shot': 2, 'way': 2, 'source': f"{isekai['data_file']}:1:cb_q.png"}


def test_label_of_the_negative_concept_makes_the_positive_prompt_the_wrong_answer(isekai):
    ds = ISEKAIDataset(**isekai, shot=2)
    meta = ds.meta(1)
    assert (meta['positive'], meta['negatives']) == ('octo-vacuum', ['Cactus boxer'])
    assert ds[1]['conversations'][-1]['value'] == 'There is "octo-vacuum" in the image.'


def test_three_way_adds_a_concept_from_the_other_records(isekai):
    ds = ISEKAIDataset(**isekai, shot=2, way=3, seed=0)
    item, meta = ds[0], ds.meta(0)
    files = names_of(item)
    # the only third concept is Glass turtle; its images are gt_1, gt_2 (file order)
    assert sorted(files[:6]) == ['cb_1.png', 'cb_2.png', 'gt_1.png', 'gt_2.png', 'ov_1.png', 'ov_2.png']
    assert meta['negatives'] == ['Octo-vacuum', 'Glass turtle'] and meta['way'] == 3 and meta['negative'] is None


def test_episodes_depend_on_seed_epoch_index_only(isekai):
    a, b = ISEKAIDataset(**isekai, shot=2, seed=4), ISEKAIDataset(**isekai, shot=2, seed=4)
    assert names_of(a[0]) == names_of(b[0])
    orders = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        orders.add(tuple(names_of(a[0])))
    assert len(orders) > 1  # 4! orders; 8 epochs all equal has probability (1/24)**7
    c = ISEKAIDataset(**isekai, shot=2, seed=5)
    assert [names_of(c[i]) for i in range(3)] != [names_of(b[i]) for i in range(3)]  # (1/24)**3 to fail


def test_shot_larger_than_a_list_is_an_error_naming_the_line(isekai):
    with pytest.raises(DataFileError, match=r"isekai10\.json:2: 'positive_list' has 2 image\(s\), fewer than shot=3"):
        ISEKAIDataset(**isekai, shot=3)


def test_missing_file_and_folder(isekai, tmp_path):
    with pytest.raises(MissingDataPathError, match='data_file: file not found'):
        ISEKAIDataset(data_file=str(tmp_path / 'nope.json'), image_folder=isekai['image_folder'])
    with pytest.raises(MissingDataPathError, match='image_folder: folder not found'):
        ISEKAIDataset(data_file=isekai['data_file'], image_folder=str(tmp_path / 'nope'))


def test_bad_json_line_names_file_and_line(isekai, tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(RECORDS[0]) + '\n{"image_name": "x.png",\n', encoding='utf-8')
    with pytest.raises(DataFileError, match=r'bad\.json:2: not valid JSON'):
        ISEKAIDataset(data_file=str(path), image_folder=isekai['image_folder'])


def test_correctly_spelled_field_is_reported_missing(isekai, tmp_path):
    record = {('positive_prompt' if k == 'positive_promt' else k): v for k, v in RECORDS[0].items()}
    path = write_jsonl(tmp_path / 'fixed_spelling.json', [record])
    with pytest.raises(DataFileError, match=r"fixed_spelling\.json:1: missing field\(s\) \['positive_promt'\]"):
        ISEKAIDataset(data_file=path, image_folder=isekai['image_folder'])


def test_label_that_is_neither_prompt(isekai, tmp_path):
    path = write_jsonl(tmp_path / 'x.json', [dict(RECORDS[0], label_name='Cactus')])
    with pytest.raises(DataFileError, match=r"x\.json:1: label_name 'Cactus' is neither"):
        ISEKAIDataset(data_file=path, image_folder=isekai['image_folder'])


def test_missing_image_is_found_at_load(isekai, tmp_path):
    path = write_jsonl(tmp_path / 'x.json', [RECORDS[0], dict(RECORDS[2], image_name='gone.png')])
    with pytest.raises(DataFileError, match=r"x\.json:2: image 'gone\.png' not found in image_folder"):
        ISEKAIDataset(data_file=path, image_folder=isekai['image_folder'])


def test_registered_and_bad_arguments(isekai):
    assert DATASETS.get('ISEKAIDataset') is ISEKAIDataset
    with pytest.raises(ValueError, match='shot must be an integer >= 1'):
        ISEKAIDataset(**isekai, shot=0)
    with pytest.raises(DataFileError, match='way=4 needs 4 concepts'):
        ISEKAIDataset(**isekai, way=4)


def test_a_question_that_places_its_image_gets_it_there_and_nowhere_else(isekai):
    phrases = dict(support_question='What is this? <image>', query_question='And what is this? <image>',
                   answer='"<label>".')
    plain, placed = ISEKAIDataset(**isekai, shot=2, seed=1), ISEKAIDataset(**isekai, shot=2, seed=1, phrases=phrases)
    a, b = plain[0], placed[0]
    assert names_of(a) == names_of(b)  # the same images in the same order
    questions = [c['value'] for c in b['conversations'][0::2]]
    assert questions == ['What is this? <image>'] * 4 + ['And what is this? <image>']
    assert b['conversations'][-1]['value'] == '"Cactus boxer".'
    assert [c['value'] for c in a['conversations'][0::2]] == [SUPPORT_Q] * 4 + [QUERY_Q]
    for bad, message in ((dict(support_question='<image> twice <image>'), r"phrases\['support_question'\] holds "
                          r"<image> 2 times"),
                         (dict(answer='"<label>" <image>'), r"phrases\['answer'\] must not hold <image>"),
                         (dict(answer='no label'), r"phrases\['answer'\] must hold <label>"),
                         (dict(greeting='hi'), r"phrases: unknown key\(s\) \['greeting'\]")):
        with pytest.raises(ValueError, match=message):
            ISEKAIDataset(**isekai, shot=2, phrases=bad)
