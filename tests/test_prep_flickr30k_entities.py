"""Converter tests: official Flickr30K Entities files -> CWB_flickr30k_*.jsonl -> Flickr30k datasets."""
import subprocess
import sys

import pytest

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.single_image_dataset.flickr import Flickr30kDataset, Flickr30kReverseDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.dataset.validation import validate_item
from tests.helpers import read_jsonl, write_images, write_jsonl
from tools.prepare_data import flickr30k_entities as conv

# Image 1000 (120x80, wide): chain 1 has its own box plus a box shared with chain 5 (one <object>, two
# <name>s); chain 2 has two boxes; chain 3 is <nobndbox>, chain 4 is <scene>. Coordinates are the
# official 1-based inclusive pixel indices; xmin=1 / ymax=80 touch the border.
XML_1000 = """<annotation>
\t<filename>1000.jpg</filename>
\t<size>
\t\t<width>120</width>
\t\t<height>80</height>
\t\t<depth>3</depth>
\t</size>
\t<object>
\t\t<name>1</name>
\t\t<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>60</xmax><ymax>80</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>2</name>
\t\t<bndbox><xmin>61</xmin><ymin>11</ymin><xmax>90</xmax><ymax>40</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>2</name>
\t\t<bndbox><xmin>91</xmin><ymin>41</ymin><xmax>120</xmax><ymax>80</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>3</name>
\t\t<scene>0</scene>
\t\t<nobndbox>1</nobndbox>
\t</object>
\t<object>
\t\t<name>4</name>
\t\t<scene>1</scene>
\t\t<nobndbox>0</nobndbox>
\t</object>
\t<object>
\t\t<name>1</name>
\t\t<name>5</name>
\t\t<bndbox><xmin>21</xmin><ymin>21</ymin><xmax>40</xmax><ymax>50</ymax></bndbox>
\t</object>
</annotation>
"""
SENTENCES_1000 = (
    "[/EN#1/people A man] in [/EN#2/clothing two orange hats] stands near [/EN#3/other a café] .\n"
    "[/EN#1/people/other The man] looks at [/EN#0/notvisual something] in [/EN#4/scene the street] .\n"
    "\n"
    "[/EN#5/people His friend] and [/EN#1/people the man] wave .\n"
)
# Image 2000 (60x100, tall): a box spanning the full width down to the bottom edge; German text.
XML_2000 = """<annotation>
\t<filename>2000.jpg</filename>
\t<size><width>60</width><height>100</height><depth>3</depth></size>
\t<object><name>7</name><bndbox><xmin>1</xmin><ymin>51</ymin><xmax>60</xmax><ymax>100</ymax></bndbox></object>
\t<object><name>8</name><bndbox><xmin>11</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>
</annotation>
"""
SENTENCES_2000 = (
    "[/EN#7/animals Ein Hund] läuft über [/EN#8/other die Straße] .\n"
    "[/EN#7/animals A dog] runs .\n"
    "[/EN#0/notvisual Nothing] happens here .\n"
)
SIZES = {'1000': (120, 80), '2000': (60, 100)}

# Boxes: the XML values minus 1, all four (the official loader's and Shikra's convention).
A_MAN, SHARED, HAT_1, HAT_2 = [0, 0, 59, 79], [20, 20, 39, 49], [60, 10, 89, 39], [90, 40, 119, 79]
DOG, STREET = [0, 50, 59, 99], [10, 0, 29, 19]
EXPECTED_TRAIN = [
    {'id': 0, 'image_id': '1000', 'sentence_id': 0,
     'sentence': '<ph_st>A man<ph_ed> in <ph_st>two orange hats<ph_ed> stands near a café .',
     'boxes': [A_MAN, SHARED, HAT_1, HAT_2], 'boxes_seq': [[0, 1], [2, 3]]},
    {'id': 1, 'image_id': '1000', 'sentence_id': 1,
     'sentence': '<ph_st>The man<ph_ed> looks at something in the street .',
     'boxes': [A_MAN, SHARED], 'boxes_seq': [[0, 1]]},
    {'id': 2, 'image_id': '1000', 'sentence_id': 2,
     'sentence': '<ph_st>His friend<ph_ed> and <ph_st>the man<ph_ed> wave .',
     'boxes': [SHARED, A_MAN], 'boxes_seq': [[0], [1, 0]]},
]
EXPECTED_TEST = [
    {'id': 0, 'image_id': '2000', 'sentence_id': 0,
     'sentence': '<ph_st>Ein Hund<ph_ed> läuft über <ph_st>die Straße<ph_ed> .',
     'boxes': [DOG, STREET], 'boxes_seq': [[0], [1]]},
    {'id': 1, 'image_id': '2000', 'sentence_id': 1, 'sentence': '<ph_st>A dog<ph_ed> runs .',
     'boxes': [DOG], 'boxes_seq': [[0]]},
    {'id': 2, 'image_id': '2000', 'sentence_id': 2, 'sentence': 'Nothing happens here .',
     'boxes': [], 'boxes_seq': []},
]


@pytest.fixture
def release(tmp_path):
    """The official layout: Sentences/, Annotations/, train/val/test.txt, plus the JPEG images."""
    root = tmp_path / 'flickr30k_entities'
    (root / 'Sentences').mkdir(parents=True)
    (root / 'Annotations').mkdir()
    for image_id, xml, text in (('1000', XML_1000, SENTENCES_1000), ('2000', XML_2000, SENTENCES_2000)):
        (root / 'Annotations' / f'{image_id}.xml').write_text(xml, encoding='utf-8')
        (root / 'Sentences' / f'{image_id}.txt').write_text(text, encoding='utf-8')
    (root / 'train.txt').write_text('1000\n')
    (root / 'val.txt').write_text('2000\n')
    (root / 'test.txt').write_text('2000\n')
    write_images(tmp_path / 'flickr30k-images', {f'{image_id}.jpg': size for image_id, size in SIZES.items()},
                 color=(200, 30, 30))
    return root


def test_converter_writes_exact_records(release, tmp_path):
    out = tmp_path / 'annotations'
    written = conv.main(['--root', str(release), '--out-dir', str(out)])
    assert written == {'train': str(out / 'CWB_flickr30k_train.jsonl'), 'val': str(out / 'CWB_flickr30k_eval.jsonl'),
                       'test': str(out / 'CWB_flickr30k_test.jsonl')}
    assert read_jsonl(written['train']) == EXPECTED_TRAIN
    assert read_jsonl(written['test']) == EXPECTED_TEST
    assert read_jsonl(written['val']) == EXPECTED_TEST
    raw = (out / 'CWB_flickr30k_test.jsonl').read_text(encoding='utf-8')
    assert 'Straße' in raw and 'läuft' in raw  # ensure_ascii=False


def test_round_trip_grounded_captions(release, tmp_path):
    out = tmp_path / 'annotations'
    conv.main(['--root', str(release), '--out-dir', str(out), '--splits', 'train', 'test'])
    images = str(tmp_path / 'flickr30k-images')
    fmt = PlainBoxFormatter()
    ds = Flickr30kDataset(str(out / 'CWB_flickr30k_train.jsonl'), images)
    assert len(ds) == 3
    item = ds[0]
    validate_item(item, 'flickr30k', 0, image_size=SIZES['1000'])
    assert item['source'] == f"{out / 'CWB_flickr30k_train.jsonl'}:1"
    assert item['target']['boxes'] == [[0.0, 0.0, 59.0, 79.0], [20.0, 20.0, 39.0, 49.0], [60.0, 10.0, 89.0, 39.0],
                                       [90.0, 40.0, 119.0, 79.0]]
    human, gpt = item['conversations']
    assert human['value'] == ds.templates.get(0) and human['value'].startswith('<image>')
    assert gpt['value'] == 'A man <boxes> in two orange hats <boxes> stands near a café .'
    assert gpt['boxes_seq'] == [[0, 1], [2, 3]]
    # 120x80 -> 120x120 square: dy = 20.
    image, target = Expand2square()(item['image'], item['target'])
    assert image.size == (120, 120)
    normed = [norm_box_xyxy(b, *image.size) for b in target['boxes']]
    expected = [[0, 20 / 120, 59 / 120, 99 / 120], [20 / 120, 40 / 120, 39 / 120, 69 / 120],
                [0.5, 0.25, 89 / 120, 59 / 120], [0.75, 0.5, 119 / 120, 99 / 120]]
    for box, want in zip(normed, expected, strict=True):
        assert box == pytest.approx(want)
    text = fmt(gpt['value'], boxes_seq=gpt['boxes_seq'], boxes=normed)
    assert text == ('A man [0.000,0.167,0.492,0.825;0.167,0.333,0.325,0.575] in two orange hats '
                    '[0.500,0.250,0.742,0.492;0.750,0.500,0.992,0.825] stands near a café .')
    assert fmt.extract(text)[1] == [[0.5, 0.25, 0.742, 0.492], [0.75, 0.5, 0.992, 0.825]]
    # a chain reached through a shared <object> (chain 5) and the box order of the third caption
    third = ds[2]
    assert third['conversations'][1]['value'] == 'His friend <boxes> and the man <boxes> wave .'
    assert third['target']['boxes'][third['conversations'][1]['boxes_seq'][0][0]] == [20.0, 20.0, 39.0, 49.0]

    test = Flickr30kDataset(str(out / 'CWB_flickr30k_test.jsonl'), images)
    item = test[0]
    validate_item(item, 'flickr30k', 0, image_size=SIZES['2000'])
    image, target = Expand2square()(item['image'], item['target'])  # 60x100: dx = 20
    normed = [norm_box_xyxy(b, *image.size) for b in target['boxes']]
    assert normed[0] == pytest.approx([0.2, 0.5, 0.79, 0.99]) and normed[1] == pytest.approx([0.3, 0.0, 0.49, 0.19])
    gpt = item['conversations'][1]
    assert fmt(gpt['value'], boxes_seq=gpt['boxes_seq'], boxes=normed) == \
        'Ein Hund [0.200,0.500,0.790,0.990] läuft über die Straße [0.300,0.000,0.490,0.190] .'
    ungrounded = test[2]
    validate_item(ungrounded, 'flickr30k', 2, image_size=SIZES['2000'])
    assert ungrounded['conversations'][1]['value'] == 'Nothing happens here .'
    assert test.meta(0) == {'image_id': '2000', 'caption': 'Ein Hund läuft über die Straße .'}


def test_round_trip_reverse(release, tmp_path):
    out = tmp_path / 'annotations'
    conv.main(['--root', str(release), '--out-dir', str(out), '--splits', 'test'])
    ds = Flickr30kReverseDataset(str(out / 'CWB_flickr30k_test.jsonl'), str(tmp_path / 'flickr30k-images'))
    assert len(ds) == 2  # the caption without a grounded phrase is left out
    item = ds[0]
    validate_item(item, 'flickr30k_reverse', 0, image_size=SIZES['2000'])
    human, gpt = item['conversations']
    listed = 'Ein Hund <boxes>, die Straße <boxes>'
    assert human['value'] == ds.templates.get(0).replace('<phrases>', listed)
    assert human['boxes_seq'] == [[0], [1]]
    assert gpt == {'from': 'gpt', 'value': 'Ein Hund läuft über die Straße .', 'boxes_seq': None, 'points_seq': None}
    image, target = Expand2square()(item['image'], item['target'])
    normed = [norm_box_xyxy(b, *image.size) for b in target['boxes']]
    rendered = PlainBoxFormatter()(human['value'], boxes_seq=human['boxes_seq'], boxes=normed)
    assert 'Ein Hund [0.200,0.500,0.790,0.990], die Straße [0.300,0.000,0.490,0.190]' in rendered


# Shikra's CWB_flickr30k_train.jsonl records of image 1000, written by hand as Shikra's flatten_annotation
# (shikras/shikra mllm/dataset/utils/flickr30k_entities_utils.py) builds them: fields id, image_id, boxes,
# sentence, boxes_seq; every XML value minus 1; a caption's chains in `set` order (here chain 2 before 1, and
# 1 before 5), each chain's boxes in XML order, so the box shared by chains 1 and 5 appears twice in caption 3.
SHIKRA_1000 = [
    {'id': 0, 'image_id': '1000', 'boxes': [HAT_1, HAT_2, A_MAN, SHARED], 'boxes_seq': [[2, 3], [0, 1]],
     'sentence': '<ph_st>A man<ph_ed> in <ph_st>two orange hats<ph_ed> stands near a café .'},
    {'id': 1, 'image_id': '1000', 'boxes': [A_MAN, SHARED], 'boxes_seq': [[0, 1]],
     'sentence': '<ph_st>The man<ph_ed> looks at something in the street .'},
    {'id': 2, 'image_id': '1000', 'boxes': [A_MAN, SHARED, SHARED], 'boxes_seq': [[2], [0, 1]],
     'sentence': '<ph_st>His friend<ph_ed> and <ph_st>the man<ph_ed> wave .'},
]


def _same_items(a, b, n):
    for k in range(n):
        x, y = a[k], b[k]
        assert x['image'].tobytes() == y['image'].tobytes()
        assert {key: v for key, v in x.items() if key not in ('image', 'source')} == \
            {key: v for key, v in y.items() if key not in ('image', 'source')}, k


def test_shikra_file_and_ours_give_the_same_items(release, tmp_path):
    out = tmp_path / 'annotations'
    conv.main(['--root', str(release), '--out-dir', str(out), '--splits', 'train'])
    ours = out / 'CWB_flickr30k_train.jsonl'
    theirs = write_jsonl(tmp_path / 'shikra' / 'CWB_flickr30k_train.jsonl', SHIKRA_1000)
    images = str(tmp_path / 'flickr30k-images')
    for cls in (Flickr30kDataset, Flickr30kReverseDataset):
        a, b = cls(str(ours), images, seed=3), cls(theirs, images, seed=3)
        assert len(a) == len(b) == 3
        _same_items(a, b, 3)
    # the canonical boxes, by hand: first mention order, the shared box once
    items = [Flickr30kDataset(theirs, images)[k] for k in range(3)]
    assert [(i['target']['boxes'], i['conversations'][1]['boxes_seq']) for i in items] == [
        ([A_MAN, SHARED, HAT_1, HAT_2], [[0, 1], [2, 3]]), ([A_MAN, SHARED], [[0, 1]]),
        ([SHARED, A_MAN], [[0], [1, 0]])]


def test_out_of_image_boxes_agree_too(release, tmp_path):
    # image 2000 (60x100) with box 8 at XML xmin=0, xmax=75: the official loader gives [-1, 0, 74, 19],
    # unclamped in Shikra's file; ours clamps to [0, 0, 60, 19]; the dataset clamps Shikra's the same way.
    xml = release / 'Annotations' / '2000.xml'
    xml.write_text(XML_2000.replace('<xmin>11</xmin>', '<xmin>0</xmin>').replace('<xmax>30</xmax>', '<xmax>75</xmax>'))
    out = tmp_path / 'annotations'
    conv.main(['--root', str(release), '--out-dir', str(out), '--splits', 'test'])
    assert read_jsonl(out / 'CWB_flickr30k_test.jsonl')[0]['boxes'] == [DOG, [0, 0, 60, 19]]
    theirs = write_jsonl(tmp_path / 'shikra.jsonl', [
        {'id': 0, 'image_id': '2000', 'boxes': [[-1, 0, 74, 19], DOG], 'boxes_seq': [[1], [0]],
         'sentence': '<ph_st>Ein Hund<ph_ed> läuft über <ph_st>die Straße<ph_ed> .'},
        {'id': 1, 'image_id': '2000', 'boxes': [DOG], 'boxes_seq': [[0]], 'sentence': '<ph_st>A dog<ph_ed> runs .'},
        {'id': 2, 'image_id': '2000', 'boxes': [], 'boxes_seq': [], 'sentence': 'Nothing happens here .'}])
    images = str(tmp_path / 'flickr30k-images')
    a, b = Flickr30kDataset(str(out / 'CWB_flickr30k_test.jsonl'), images), Flickr30kDataset(theirs, images)
    _same_items(a, b, 3)
    assert b[0]['target']['boxes'] == [[0.0, 50.0, 59.0, 99.0], [0.0, 0.0, 60.0, 19.0]]


def test_per_image_option(release, tmp_path):
    out = tmp_path / 'per_image'
    conv.main(['--root', str(release), '--out-dir', str(out), '--splits', 'train', '--per-image'])
    records = read_jsonl(out / 'CWB_flickr30k_train.jsonl')
    assert records == [{**EXPECTED_TRAIN[0], 'captions': [
        'A man in two orange hats stands near a café .', 'The man looks at something in the street .',
        'His friend and the man wave .']}]
    ds = Flickr30kDataset(str(out / 'CWB_flickr30k_train.jsonl'), str(tmp_path / 'flickr30k-images'))
    assert ds.meta(0)['references'][2] == 'His friend and the man wave .'


def test_sentence_parser_types_and_spans():
    parsed = conv.parse_sentence('[/EN#1/people/other Two young , White males] are near [/EN#4/scene bushes] .',
                                 'x.txt:1')
    assert parsed['words'] == ['Two', 'young', ',', 'White', 'males', 'are', 'near', 'bushes', '.']
    assert parsed['phrases'] == [
        {'first_word_index': 0, 'num_words': 5, 'phrase': 'Two young , White males', 'entity_id': '1',
         'types': ['people', 'other']},
        {'first_word_index': 7, 'num_words': 1, 'phrase': 'bushes', 'entity_id': '4', 'types': ['scene']}]


@pytest.mark.parametrize('line, problem', [
    ('[/EN#1/people A man in [/EN#2/clothing a hat] .', 'opens a phrase while'),
    ('[/EN#1/people A man in a hat .', 'never closed'),
    ('A man] in [/EN#2/clothing a hat] .', 'never opened'),
    ('[/EN#1/people A man]] walks .', "stray ']'"),
    ('[EN1 A man] walks .', 'malformed phrase marker'),
])
def test_unbalanced_markup_names_file_and_line(release, tmp_path, line, problem):
    path = release / 'Sentences' / '1000.txt'
    path.write_text(f'[/EN#1/people A man] walks .\n{line}\n', encoding='utf-8')
    with pytest.raises(conv.Flickr30kFormatError) as info:
        conv.main(['--root', str(release), '--out-dir', str(tmp_path / 'o'), '--splits', 'train'])
    assert f'{path}:2' in str(info.value) and problem in str(info.value)


def test_bad_annotation_files(release, tmp_path):
    xml = release / 'Annotations' / '1000.xml'
    xml.write_text(XML_1000.replace('<xmax>90</xmax>', '<xmax>50</xmax>'), encoding='utf-8')
    with pytest.raises(conv.Flickr30kFormatError, match=r'1000\.xml <object> #2: inverted box'):
        conv.read_annotation(str(xml))
    xml.write_text(XML_1000.replace('<ymin>11</ymin>', '<ymin>eleven</ymin>'), encoding='utf-8')
    with pytest.raises(conv.Flickr30kFormatError, match=r'1000\.xml <object> #2: <ymin> is not an integer'):
        conv.read_annotation(str(xml))
    xml.write_text('<annotation><size>', encoding='utf-8')
    with pytest.raises(conv.Flickr30kFormatError, match=r'1000\.xml: not valid XML'):
        conv.read_annotation(str(xml))
    (release / 'train.txt').write_text('1000\n3000\n')
    xml.write_text(XML_1000, encoding='utf-8')
    with pytest.raises(conv.Flickr30kFormatError, match=r'annotation file not found: .*3000\.xml'):
        conv.main(['--root', str(release), '--out-dir', str(tmp_path / 'o'), '--splits', 'train'])


def test_boxes_are_clamped_to_the_image(tmp_path):
    xml = tmp_path / 'a.xml'
    xml.write_text(XML_2000.replace('<xmax>30</xmax>', '<xmax>75</xmax>').replace('<ymin>1</ymin>', '<ymin>0</ymin>'))
    # 75 - 1 = 74 > width 60 -> 60; 0 - 1 = -1 -> 0; the other box is inside the 60x100 image
    annotation = conv.read_annotation(str(xml))
    assert annotation['objects'] == [DOG, [10, 0, 60, 19]] and annotation['clamped'] == 1


def test_script_help():
    result = subprocess.run([sys.executable, 'tools/prepare_data/flickr30k_entities.py', '--help'],
                            capture_output=True, text=True, check=True)
    assert '--root' in result.stdout and '--per-image' in result.stdout
