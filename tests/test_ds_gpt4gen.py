"""GPT4GenDataset on fixtures in the layout of Shikra's GPT4GEN_BoxCoT_train.jsonl / GPT4GEN_RD_BoxCoT_train.jsonl:
the three versions' texts and boxes, and the load-time errors naming file:line."""
import pytest

from mllm.dataset.root import DATASETS
from mllm.dataset.single_image_dataset.gpt4gen import GPT4GenDataset, mark_boxes
from mllm.dataset.utils.io import DataFileError
from mllm.dataset.validation import validate_item
from tests.helpers import save_png, write_jsonl

# Flickr30K images (width, height).
SIZES = {'1000092795.jpg': (80, 120), '1001773457.jpg': (150, 100)}
# BoxCoT: the question names no region, the chain of thought grounds what it uses (one group of two boxes).
BOXCOT = [{
    'img_path': '1000092795.jpg', 'boxes': [[0, 0, 40, 60], [30, 60, 80, 120], [10, 90, 70, 110]],
    'question': 'What are the two people doing together?', 'question_boxes_seq': [],
    'answer': 'They are playing frisbee.',
    'cot_with_ans': '<ph_st>Two people<ph_ed> stand apart and <ph_st>a frisbee<ph_ed> flies between them, so they '
                    'are playing frisbee.',
    'answer_boxes_seq': [[0, 1], [2]],
}]
# RD (referential dialogue): the question points at regions too.
RD = [{
    'img_path': '1001773457.jpg', 'boxes': [[15, 0, 75, 50], [90, 40, 150, 100]],
    'question': 'Is <ph_st>the dog<ph_ed> bigger than <ph_st>the cat<ph_ed>?', 'question_boxes_seq': [[0], [1]],
    'answer': 'Yes.',
    'cot_with_ans': '<ph_st>The dog<ph_ed> fills more of the picture than <ph_st>the cat<ph_ed>, so yes, the dog '
                    'is bigger.',
    'answer_boxes_seq': [[0], [1]],
}]


def write_gpt4gen(root) -> dict:
    """GPT4GEN_BoxCoT_train.jsonl, GPT4GEN_RD_BoxCoT_train.jsonl and their images under root/flickr30k-images."""
    for name, size in SIZES.items():
        save_png(root / 'flickr30k-images' / name, size)
    return {'boxcot': write_jsonl(root / 'GPT4GEN_BoxCoT_train.jsonl', BOXCOT),
            'rd': write_jsonl(root / 'GPT4GEN_RD_BoxCoT_train.jsonl', RD),
            'images': str(root / 'flickr30k-images'), 'root': root}


@pytest.fixture
def gpt4gen(tmp_path):
    return write_gpt4gen(tmp_path)


def turns(item):
    return [(t['from'], t['value'], t['boxes_seq']) for t in item['conversations']]


def test_versions(gpt4gen):
    bc = DATASETS.build(dict(type='GPT4GenDataset', filename=gpt4gen['boxcot'], image_folder=gpt4gen['images'],
                             version='bc'))
    item = bc[0]
    validate_item(item, 'gpt4gen', 0, image_size=item['image'].size, box_tolerance=0)
    assert item['image'].size == (80, 120) and item['source'] == f"{gpt4gen['boxcot']}:1"
    assert item['target'] == {'boxes': [[0.0, 0.0, 40.0, 60.0], [30.0, 60.0, 80.0, 120.0], [10.0, 90.0, 70.0, 110.0]],
                              'points': []}
    human, answer = item['conversations']
    assert human['value'] == bc.question(0, {'<question>': 'What are the two people doing together?'})
    assert human['boxes_seq'] is None and '<boxes>' not in human['value']
    assert (answer['value'], answer['boxes_seq']) == (
        'Two people <boxes> stand apart and a frisbee <boxes> flies between them, so they are playing frisbee.',
        [[0, 1], [2]])
    assert bc.meta(0) == {'answer': 'They are playing frisbee.'}

    c = GPT4GenDataset(gpt4gen['boxcot'], gpt4gen['images'], version='c')
    assert turns(c[0])[1] == ('gpt', 'Two people stand apart and a frisbee flies between them, so they are playing '
                                     'frisbee.', None)
    a = GPT4GenDataset(gpt4gen['boxcot'], gpt4gen['images'], version='a')
    assert turns(a[0])[1] == ('gpt', 'They are playing frisbee.', None)


def test_rd_question_keeps_its_boxes_in_every_version(gpt4gen):
    for version, answer, seq in (
            ('bc', 'The dog <boxes> fills more of the picture than the cat <boxes>, so yes, the dog is bigger.',
             [[0], [1]]),
            ('c', 'The dog fills more of the picture than the cat, so yes, the dog is bigger.', None),
            ('a', 'Yes.', None)):
        ds = GPT4GenDataset(gpt4gen['rd'], gpt4gen['images'], version=version)
        item = ds[0]
        validate_item(item, f'gpt4gen rd {version}', 0, image_size=(150, 100), box_tolerance=0)
        question = ds.question(0, {'<question>': 'Is the dog <boxes> bigger than the cat <boxes>?'})
        assert turns(item) == [('human', question, [[0], [1]]), ('gpt', answer, seq)]
        assert item['target']['boxes'] == [[15.0, 0.0, 75.0, 50.0], [90.0, 40.0, 150.0, 100.0]]


def test_default_templates(gpt4gen):
    for version, name in (('a', 'GPT4Gen.json'), ('c', 'GPT4Gen_CoT.json'), ('bc', 'GPT4Gen_BCoT.json')):
        ds = GPT4GenDataset(gpt4gen['rd'], gpt4gen['images'], version=version)
        assert ds.templates.path.endswith('/' + name) and len(ds.templates.templates) >= 5
        assert all(t.count('<image>') == 1 and t.count('<question>') == 1 for t in ds.templates.templates)


def test_markers():
    assert mark_boxes('Is <ph_st>the dog <ph_ed> near <ph_st>it<ph_ed>?', with_boxes=True) == \
        'Is the dog <boxes> near it <boxes>?'
    assert mark_boxes('Is the dog<ph_ed> near it?', with_boxes=False) == 'Is the dog near it?'  # no start marker


@pytest.mark.parametrize('change, version, message', [
    (dict(question_boxes_seq=[[0]]), 'a', r'the text marks 2 phrase\(s\) but question_boxes_seq has 1 group'),
    (dict(question_boxes_seq=None), 'bc', r'the text marks 2 phrase\(s\) but question_boxes_seq has 0 group'),
    (dict(answer_boxes_seq=[[0], [2]]), 'bc', r'answer_boxes_seq\[1\] refers to box 2 but the record has 2 box'),
    (dict(answer_boxes_seq=[[0], []]), 'bc', r'answer_boxes_seq\[1\] = \[\] must be a non-empty list'),
    (dict(boxes=[[15, 0, 75, 50], [90, 40, 80, 100]]), 'a', r'boxes\[1\] = \[90, 40, 80, 100\] has x1<x0'),
    (dict(boxes=[[15, 0, 75], [90, 40, 150, 100]]), 'a', r'boxes\[0\] = \[15, 0, 75\] is not \[x0, y0, x1, y1\]'),
    (dict(cot_with_ans=None), 'c', r"version c needs the text field 'cot_with_ans'"),
    (dict(answer=None), 'a', r"version a needs the text field 'answer'"),
    (dict(question=None), 'a', r"'question' must be a string"),
])
def test_bad_record_names_file_and_line(gpt4gen, change, version, message):
    path = write_jsonl(gpt4gen['root'] / 'bad.jsonl', [*BOXCOT, dict(RD[0], **change)])
    with pytest.raises(DataFileError, match=r'bad\.jsonl:2: ' + message):
        GPT4GenDataset(path, gpt4gen['images'], version=version)


def test_missing_fields_and_versions(gpt4gen):
    path = write_jsonl(gpt4gen['root'] / 'bad.jsonl', [BOXCOT[0], {k: v for k, v in RD[0].items() if k != 'boxes'}])
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: missing field\(s\) \['boxes'\]"):
        GPT4GenDataset(path, gpt4gen['images'])
    with pytest.raises(ValueError, match="unknown version 'q-bc'; valid versions: a, c, bc"):
        GPT4GenDataset(gpt4gen['rd'], gpt4gen['images'], version='q-bc')
    with pytest.raises(DataFileError, match='image_folder'):
        GPT4GenDataset(gpt4gen['rd'], str(gpt4gen['root'] / 'nowhere'))
