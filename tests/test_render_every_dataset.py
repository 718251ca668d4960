"""Every registered dataset class, rendered end to end for the tiny model through `SingleImageConvDataset`.

One table of cases (a dataset class, a few records in its real file format, constructor kwargs) drives
the checks; a test fails when a registered class has no case, so a new dataset cannot skip rendering.
Conversation settings are the defaults of config/_base_/model/llava_tiny.py: 'vicuna_v1.1',
Expand2square, max_length 1024 (the tiny model: 64 image tokens per `<image>`).

Per case and sample:
  train  the decoded prompt equals the vicuna text written here by hand (placeholders all filled, the
         image a single block of image tokens), the label tokens are exactly the gpt turns with their
         boxes/points formatted and the `</s>` that closes each assistant turn, and nothing is skipped;
  eval   the prompt ends with 'ASSISTANT:' and `labels` is the last gpt turn, formatted.
For one case per box/point-bearing dataset the coordinates parsed back from the rendered text are
compared with values computed by hand from the fixture's pixel coordinates.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

import mllm.dataset.builder  # noqa: F401  (registers every dataset)
from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.process_function.conv_template import VICUNA_SYSTEM
from mllm.dataset.root import DATASETS, IGNORE_INDEX, IMAGE_PLACEHOLDER
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy, norm_point_xy
from mllm.dataset.validation import InvalidSampleError

CONV = dict(conv_template='vicuna_v1.1', transform=dict(type='Expand2square'), max_length=1024)
END_OF_TURN = '</s>'  # vicuna_v1.1 closes every assistant turn with it (trained on)
# Anything looking like a tag left in the rendered text: '<expr>', '<question>', '<ph_st>', '</objs>', ...
TAG = re.compile(r'</?[A-Za-z_][\w-]*>')


def save_png(path: Path, size, colour=(30, 140, 220)):
    """A PNG (lossless) image; official file names ending in .jpg keep their name, PIL reads by content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new('RGB', size, colour)
    image.putpixel((0, 0), (255, 0, 0))
    image.save(path, format='PNG')


def write_jsonl(path: Path, records) -> str:
    path.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records), encoding='utf-8')
    return str(path)


def write_json(path: Path, data) -> str:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding='utf-8')
    return str(path)


# -- fixtures in each dataset's real format: write(folder) -> the path arguments of the constructor ------------
def write_box_records(root: Path) -> dict:
    """Shikra-style one-box JSONL (REC_ref3_*.jsonl, GC_genome196_*.jsonl): img_path, expression, bbox."""
    save_png(root / 'images' / 'COCO_train2014_000000000009.jpg', (96, 64))
    save_png(root / 'images' / 'VG_100K' / '2.jpg', (64, 96))
    records = [
        {'img_path': 'COCO_train2014_000000000009.jpg', 'expression': 'the red circle', 'bbox': [10, 5, 50, 40],
         'height': 64, 'width': 96, 'ref_id': 3},
        # touches the left, right and bottom border
        {'img_path': 'VG_100K/2.jpg', 'expression': 'the blue square at the bottom', 'bbox': [0, 48, 64, 96]},
    ]
    return {'filename': write_jsonl(root / 'rec.jsonl', records), 'image_folder': str(root / 'images')}


# 96x64 -> padded 16 px above; 64x96 -> padded 16 px left; both divided by the side 96.
BOX_RECORD_BOXES = {0: [10 / 96, 21 / 96, 50 / 96, 56 / 96], 1: [16 / 96, 48 / 96, 80 / 96, 1.0]}


def write_coco_captions(root: Path) -> dict:
    """Official annotations/captions_val2014.json (COCO format)."""
    images = [(42, 'COCO_val2014_000000000042.jpg', (64, 48)), (73, 'COCO_val2014_000000000073.jpg', (40, 60))]
    for _, name, size in images:
        save_png(root / 'val2014' / name, size)
    data = {
        'info': {'description': 'COCO 2014 Dataset', 'version': '1.0', 'year': 2014},
        'images': [{'license': 3, 'file_name': name, 'height': size[1], 'width': size[0], 'id': image_id,
                    'coco_url': f'http://images.cocodataset.org/val2014/{name}'} for image_id, name, size in images],
        'licenses': [{'url': 'http://creativecommons.org/licenses/by-nc-sa/2.0/', 'id': 3, 'name': 'BY-NC-SA'}],
        'type': 'captions',
        'annotations': [{'image_id': 42, 'id': 101, 'caption': 'A dog sitting next to a  bicycle.\n'},
                        {'image_id': 73, 'id': 205, 'caption': 'Un café sur une table en bois. '},
                        {'image_id': 42, 'id': 330, 'caption': 'A brown dog near a bike'}],
    }
    return {'filename': write_json(root / 'captions_val2014.json', data), 'image_folder': str(root / 'val2014')}


def write_karpathy(root: Path) -> dict:
    """Karpathy's dataset_coco.json; image_folder is the COCO root holding val2014/."""
    save_png(root / 'val2014' / 'COCO_val2014_000000000042.jpg', (64, 48))
    image = {'filepath': 'val2014', 'filename': 'COCO_val2014_000000000042.jpg', 'imgid': 0, 'split': 'test',
             'cocoid': 42, 'sentids': [0, 1],
             'sentences': [{'tokens': ['a', 'dog', 'by', 'a', 'bike'], 'raw': 'A dog by a bike.', 'imgid': 0,
                            'sentid': 0},
                           {'tokens': ['a', 'brown', 'dog'], 'raw': 'A brown dog.', 'imgid': 0, 'sentid': 1}]}
    return {'filename': write_json(root / 'dataset_coco.json', {'dataset': 'coco', 'images': [image]}),
            'image_folder': str(root)}


GQA_WALL, GQA_PIPE = [0, 0, 120, 40], [50, 10, 60, 40]  # on 120x80: the wall touches three borders
GQA_PERSON, GQA_PERSON2 = [0, 10, 30, 90], [30, 0, 60, 45]  # on 60x90


def write_gqa(root: Path) -> dict:
    """tools/prepare_data/gqa.py JSONL with scene-graph boxes (pixel xyxy) and the executed program."""
    save_png(root / 'images' / '2375429.jpg', (120, 80))
    save_png(root / 'images' / 'n161313.jpg', (60, 90))
    records = [
        {'question_id': '07333408', 'image_id': '2375429', 'img_path': '2375429.jpg', 'width': 120, 'height': 80,
         'question': 'What is on the white wall?', 'answer': 'pipe', 'full_answer': 'The pipe is on the wall.',
         'boxes': [GQA_WALL, GQA_PIPE],
         'question_boxed': 'What is on the white wall <boxes>?', 'question_boxes_seq': [[0]],
         'full_answer_boxed': 'The pipe <boxes> is on the wall <boxes>.', 'full_answer_boxes_seq': [[1], [0]],
         'semantic': [{'operation': 'select', 'argument': 'wall', 'dependencies': [], 'boxes': [0]},
                      {'operation': 'filter color', 'argument': 'white', 'dependencies': [0], 'boxes': None},
                      {'operation': 'relate', 'argument': '_,on,s', 'dependencies': [1], 'boxes': [1]},
                      {'operation': 'query', 'argument': 'name', 'dependencies': [2], 'boxes': None}]},
        {'question_id': '05515938', 'image_id': 'n161313', 'img_path': 'n161313.jpg', 'width': 60, 'height': 90,
         'question': 'Are both people standing?', 'answer': 'yes', 'full_answer': 'Yes, both people are standing.',
         'boxes': [GQA_PERSON, GQA_PERSON2],
         'question_boxed': 'Are both people <boxes> standing?', 'question_boxes_seq': [[0, 1]],
         'full_answer_boxed': 'Yes, both people <boxes> are standing.', 'full_answer_boxes_seq': [[0, 1]],
         'semantic': [{'operation': 'select', 'argument': 'people', 'dependencies': [], 'boxes': [0, 1]},
                      {'operation': 'verify pose', 'argument': 'standing', 'dependencies': [0], 'boxes': None}]},
    ]
    return {'filename': write_jsonl(root / 'GQA_val_balanced.jsonl', records), 'image_folder': str(root / 'images')}


CLEVR_POINTS = [[10, 20], [50, 30], [96, 63], [0, 40]]  # on 96x64; two on the border


def _clevr_step(function, inputs, values=(), objects=None, value=None):
    out = {'function': function, 'inputs': inputs, 'value_inputs': list(values)}
    out.update({'objects': objects} if objects is not None else {'value': value})
    return out


def write_clevr(root: Path) -> dict:
    """tools/prepare_data/clevr.py JSONL: the program executed on the scene, object centres in pixels."""
    image = Image.new('RGBA', (96, 64), (10, 200, 10, 255))  # CLEVR images are RGBA PNGs
    (root / 'images' / 'val').mkdir(parents=True)
    image.save(root / 'images' / 'val' / 'CLEVR_val_000000.png')
    every = [0, 1, 2, 3]

    def record(index, question, answer, program):
        return {'question_index': index, 'image_index': 0, 'img_path': 'CLEVR_val_000000.png', 'question': question,
                'answer': answer, 'question_family_index': 0, 'points': CLEVR_POINTS, 'program': program}

    s = _clevr_step
    records = [
        record(0, 'What material is the big cylinder?', 'rubber', [
            s('scene', [], objects=every), s('filter_size', [0], ['large'], objects=[0, 2]),
            s('filter_shape', [1], ['cylinder'], objects=[2]), s('unique', [2], objects=[2]),
            s('query_material', [3], value='rubber')]),
        record(1, 'How many things are either red cubes or small spheres?', '3', [
            s('scene', [], objects=every), s('filter_color', [0], ['red'], objects=[0, 3]),
            s('filter_shape', [1], ['cube'], objects=[0]), s('scene', [], objects=every),
            s('filter_size', [3], ['small'], objects=[1, 3]), s('filter_shape', [4], ['sphere'], objects=[1, 3]),
            s('union', [2, 5], objects=[0, 1, 3]), s('count', [6], value='3')]),
    ]
    return {'filename': write_jsonl(root / 'CLEVR_val.jsonl', records), 'image_folder': str(root / 'images' / 'val')}


FLICKR_BOXES = [[0, 10, 40, 60], [50, 0, 100, 30], [60, 30, 100, 60]]  # on 100x60; boxes on every border


def write_flickr(root: Path) -> dict:
    """Shikra's CWB_flickr30k_*.jsonl: the image is `<image_id>.jpg`, phrases marked with <ph_st>/<ph_ed>."""
    save_png(root / 'images' / '36979.jpg', (100, 60))
    records = [
        {'id': 0, 'image_id': '36979', 'boxes': FLICKR_BOXES, 'boxes_seq': [[0], [1, 2]],
         'sentence': '<ph_st>A naïve child<ph_ed> holds <ph_st>two kites<ph_ed> .'},
        {'id': 1, 'image_id': '36979', 'boxes': FLICKR_BOXES[:2], 'boxes_seq': [[0], [1], [0]],
         'sentence': '<ph_st>A child<ph_ed> and <ph_st>a kite<ph_ed> ; <ph_st>A child<ph_ed> smiles .'},
    ]
    return {'filename': write_jsonl(root / 'CWB_flickr30k_train.jsonl', records), 'image_folder': str(root / 'images')}


# 100x60 -> padded 20 px above, divided by 100.
FLICKR_NORM = [[0.0, 0.3, 0.4, 0.8], [0.5, 0.2, 1.0, 0.5], [0.6, 0.5, 1.0, 0.8]]


def write_llava(root: Path) -> dict:
    """llava_v1_5_mix665k.json: one JSON array; a two-round sample, a one-round one and a text-only one."""
    save_png(root / 'data' / '000000033471.jpg', (100, 60))
    save_png(root / 'data' / 'coco' / 'train2017' / '000000000009.jpg', (30, 45))
    samples = [
        {'id': '000000033471', 'image': '000000033471.jpg', 'conversations': [
            {'from': 'human', 'value': 'What are the colors of the bus in the image?\n<image>'},
            {'from': 'gpt', 'value': 'The bus in the image is white and red.'},
            {'from': 'human', 'value': 'What feature can be seen on the back of the bus?'},
            {'from': 'gpt', 'value': 'The back of the bus features an advertisement — « Café & Crème ».'}]},
        {'id': 'i6IyJda_0', 'model': '', 'conversations': [
            {'from': 'human', 'value': 'How to get result of python multiprocessing.Process'},
            {'from': 'gpt', 'value': 'Use a multiprocessing.Queue or a Pool.'}]},
        {'id': '9', 'image': 'coco/train2017/000000000009.jpg', 'conversations': [
            {'from': 'human', 'value': '<image>\nWhat is in the bowls?'},
            {'from': 'gpt', 'value': 'Fruit and broccoli.'}]},
    ]
    return {'filename': write_json(root / 'llava_v1_5_mix665k.json', samples), 'image_folder': str(root / 'data')}


def write_point_qa(root: Path, twice: bool = False) -> dict:
    """Shikra's pointQA_local_*.jsonl: file_path, question, answer, bbox, point (pixels of the original image)."""
    save_png(root / 'images' / 'VG_100K' / 'wide.jpg', (120, 80))
    save_png(root / 'images' / 'VG_100K' / 'tall.jpg', (60, 100))
    records = [
        # box touches the left and bottom border; explicit point
        {'file_path': 'VG_100K/wide.jpg', 'question': 'What colour is this?', 'answer': 'red',
         'bbox': [0, 10, 40, 80], 'point': [20, 45]},
        # box touches the top and right border; no point -> the box centre (35, 15)
        {'file_path': 'VG_100K/tall.jpg', 'question': "Qu'est-ce que c'est ?", 'answer': 'café',
         'bbox': [10, 0, 60, 30]},
    ]
    if twice:  # pointQA_twice_*.jsonl: three phrasings of a counting question
        records = [dict(records[0], question='How many cars like this one are there?', answer=3,
                        obj_question='How many cars like this one are there?',
                        super_question='How many vehicles like this one are there?',
                        general_question='How many of these are there?'),
                   dict(records[1], question='How many cups like this one are there?', answer=2,
                        obj_question='How many cups like this one are there?',
                        super_question='How many containers like this one are there?',
                        general_question='How many of these are there?')]
    return {'filename': write_jsonl(root / 'pointQA.jsonl', records), 'image_folder': str(root / 'images')}


def write_point_qa_twice(root: Path) -> dict:
    return write_point_qa(root, twice=True)


# 120x80 -> padded 20 px above (/120); 60x100 -> padded 20 px left (/100).
POINT_QA_NORM = {0: ([0.0, 30 / 120, 40 / 120, 100 / 120], [20 / 120, 65 / 120]),
                 1: ([0.3, 0.0, 0.8, 0.3], [0.55, 0.15])}


V7W_CANDIDATES = [[0, 0, 30, 20], [60, 40, 90, 60], [10, 25, 50, 55]]  # on 90x60


def write_v7w(root: Path) -> dict:
    """tools/prepare_data/visual7w.py JSONL (answer_index) and a record in Shikra's layout (answer box)."""
    save_png(root / 'images' / 'v7w_1.jpg', (90, 60))
    save_png(root / 'images' / 'v7w_2.jpg', (50, 100))
    records = [
        {'img_path': 'v7w_1.jpg', 'question': 'Which cup is full?', 'candidates': V7W_CANDIDATES, 'answer_index': 2,
         'width': 90, 'height': 60, 'qa_id': 11},
        {'file_path': 'v7w_2.jpg', 'question': 'Which sign says stop?',
         'candidates': [[0, 0, 50, 40], [5, 60, 45, 100], [20, 20, 30, 30]], 'answer': [5, 60, 45, 100]},
    ]
    return {'filename': write_jsonl(root / 'v7w_pointing_test.jsonl', records), 'image_folder': str(root / 'images')}


# 90x60 -> padded 15 px above, divided by 90; the points are the candidates' centres.
V7W_BOXES = [[0.0, 15 / 90, 30 / 90, 35 / 90], [60 / 90, 55 / 90, 1.0, 75 / 90], [10 / 90, 40 / 90, 50 / 90, 70 / 90]]
V7W_POINTS = [[15 / 90, 25 / 90], [75 / 90, 65 / 90], [30 / 90, 55 / 90]]


def write_pope(root: Path) -> dict:
    """The official coco_pope_random.json (JSON lines)."""
    save_png(root / 'val2014' / 'COCO_val2014_000000310196.jpg', (64, 48))
    save_png(root / 'val2014' / 'COCO_val2014_000000000042.jpg', (30, 70))
    lines = [
        {'question_id': 1, 'image': 'COCO_val2014_000000310196.jpg', 'image_id': 310196,
         'text': 'Is there a snowboard in the image?', 'label': 'yes'},
        {'question_id': 3, 'image': 'COCO_val2014_000000000042.jpg', 'text': 'Is there a dog in the image?',
         'label': 'no'},
    ]
    return {'filename': write_jsonl(root / 'coco_pope_random.json', lines), 'image_folder': str(root / 'val2014')}


def _sqa_problem(question, choices, answer, image, split, hint='', lecture='', solution=''):
    return {'question': question, 'choices': choices, 'answer': answer, 'hint': hint, 'image': image,
            'task': 'closed choice', 'choice': 'closed choice', 'grade': 'grade4', 'subject': 'natural science',
            'topic': 'geography', 'category': 'Geography', 'skill': 'Read a map', 'lecture': lecture,
            'solution': solution, 'split': split}


def write_scienceqa(root: Path) -> dict:
    """The official release: problems.json and images/<split>/<pid>/image.png."""
    problems = {
        '5': _sqa_problem('Which of these states is farthest north?', ['Texas', 'Ohio', 'Maine'], 2, 'image.png',
                          'test', hint='Look at the map.', lecture='Maps have four cardinal directions.',
                          solution='Maine is farthest north.'),
        '6': _sqa_problem('Which tense does the sentence use?', ['past', 'future'], 0, None, 'test'),  # text only
        '7': _sqa_problem('What is the capital of Utah?', ['Salt Lake City', 'Denver'], 0, 'image.png', 'test'),
    }
    save_png(root / 'images' / 'test' / '5' / 'image.png', (60, 90))
    save_png(root / 'images' / 'test' / '7' / 'image.png', (80, 50))
    return {'filename': write_json(root / 'problems.json', problems), 'image_folder': str(root / 'images')}


def _vqa_answers(texts):
    return [{'answer': t, 'answer_confidence': 'yes', 'answer_id': k + 1} for k, t in enumerate(texts)]


def write_vqav2(root: Path) -> dict:
    """tools/prepare_data/vqav2.py JSONL (the official annotation nested under 'annotation')."""
    save_png(root / 'val2014' / 'COCO_val2014_000000000042.jpg', (96, 64))
    save_png(root / 'val2014' / 'COCO_val2014_000000000007.jpg', (64, 100))
    records = [
        {'question_id': 42000, 'image_id': 42, 'image_path': 'COCO_val2014_000000000042.jpg',
         'question': 'How many dogs are there?',
         'annotation': {'question_type': 'how many', 'answer_type': 'number', 'multiple_choice_answer': '2',
                        'answers': _vqa_answers(['2'] * 6 + ['3'] * 3 + ['two'])}},
        {'question_id': 7000, 'image_id': 7, 'image_path': 'COCO_val2014_000000000007.jpg',
         'question': 'What colour is the café sign?',
         'annotation': {'question_type': 'what color is the', 'answer_type': 'other',
                        'multiple_choice_answer': 'dark red', 'answers': _vqa_answers(['red', 'dark red'] * 5)}},
    ]
    return {'filename': write_jsonl(root / 'vqav2_val.jsonl', records), 'image_folder': str(root / 'val2014')}


def write_vqa_test(root: Path) -> dict:
    """tools/prepare_data/vqav2.py JSONL of test-dev: questions without answers."""
    save_png(root / 'test2015' / 'COCO_test2015_000000000001.jpg', (80, 40))
    records = [{'question_id': 1000, 'image_id': 1, 'image_path': 'COCO_test2015_000000000001.jpg',
                'question': 'Is the sky blue?'}]
    return {'filename': write_jsonl(root / 'vqav2_testdev.jsonl', records), 'image_folder': str(root / 'test2015')}


# -- the table --------------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    type: str
    write: Callable[[Path], dict]
    kwargs: dict = field(default_factory=dict)
    # sample index -> {'boxes': [groups], 'points': [groups]}: every coordinate group of the rendered
    # conversation in reading order, normalised by hand from the fixture's pixel coordinates.
    coords: dict = field(default_factory=dict)


def _box_groups(*groups):
    return {'boxes': [list(g) for g in groups], 'points': []}


GQA_VERSIONS = ('q-a', 'q-c', 'q-bl', 'q-bc', 'q-s', 'q-bs', 'qb-a', 'qb-bc', 'qbp-bl')
W, P = [0.0, 20 / 120, 1.0, 60 / 120], [50 / 120, 30 / 120, 60 / 120, 60 / 120]  # GQA wall, pipe after padding

CASES = [
    Case('REC', 'RECDataset', write_box_records,
         coords={0: _box_groups([BOX_RECORD_BOXES[0]]), 1: _box_groups([BOX_RECORD_BOXES[1]])}),
    Case('REC-answer', 'RECDataset', write_box_records, {'answer': 'It is at <boxes>.'}),
    Case('REG', 'REGDataset', write_box_records, coords={0: _box_groups([BOX_RECORD_BOXES[0]])}),
    Case('GC', 'GCDataset', write_box_records, coords={1: _box_groups([BOX_RECORD_BOXES[1]])}),
    Case('COCOCaption-train', 'COCOCaptionDataset', write_coco_captions, {'mode': 'train'}),
    Case('COCOCaption-eval', 'COCOCaptionDataset', write_coco_captions, {'mode': 'eval'}),
    Case('COCOCaption-karpathy', 'COCOCaptionDataset', write_karpathy, {'split': 'test'}),
    *[Case(f'GQA-{v}', 'GQADataset', write_gqa, {'version': v}) for v in GQA_VERSIONS],
    # qb-bc: the question's wall, then the steps' wall and pipe; 60x90 padded 15 px left: two people, twice.
    Case('GQA-qb-bc-coords', 'GQADataset', write_gqa, {'version': 'qb-bc'},
         coords={0: _box_groups([W], [W], [P]),
                 1: _box_groups(*[[[15 / 90, 10 / 90, 45 / 90, 1.0], [45 / 90, 0.0, 75 / 90, 45 / 90]]] * 2)}),
    *[Case(f'CLEVR-{v}', 'CLEVRDataset', write_clevr, {'version': v}) for v in ('q-a', 'q-s')],
    # 96x64 -> padded 16 px above, /96: object 2 = (96, 79); the union names 0, (1, 3), then 0, 1, 3.
    Case('CLEVR-q-bs', 'CLEVRDataset', write_clevr, {'version': 'q-bs'},
         coords={0: {'boxes': [], 'points': [[[1.0, 79 / 96]]]},
                 1: {'boxes': [], 'points': [[[10 / 96, 36 / 96]], [[50 / 96, 46 / 96], [0.0, 56 / 96]],
                                             [[10 / 96, 36 / 96], [50 / 96, 46 / 96], [0.0, 56 / 96]]]}}),
    Case('Flickr30k', 'Flickr30kDataset', write_flickr,
         coords={0: _box_groups([FLICKR_NORM[0]], FLICKR_NORM[1:]),
                 1: _box_groups([FLICKR_NORM[0]], [FLICKR_NORM[1]], [FLICKR_NORM[0]])}),
    # The reverse lists a repeated mention (same phrase, same boxes) once.
    Case('Flickr30kReverse', 'Flickr30kReverseDataset', write_flickr,
         coords={0: _box_groups([FLICKR_NORM[0]], FLICKR_NORM[1:]),
                 1: _box_groups([FLICKR_NORM[0]], [FLICKR_NORM[1]])}),
    Case('LLaVAInstruct', 'LLaVAInstructDataset', write_llava),
    Case('LLaVAInstruct-blank', 'LLaVAInstructDataset', write_llava, {'text_only': 'blank'}),
    Case('PointQALocal-box', 'PointQALocalDataset', write_point_qa, {'version': 'box'},
         coords={k: _box_groups([box]) for k, (box, _) in POINT_QA_NORM.items()}),
    Case('PointQALocal-point', 'PointQALocalDataset', write_point_qa, {'version': 'point'},
         coords={k: {'boxes': [], 'points': [[point]]} for k, (_, point) in POINT_QA_NORM.items()}),
    Case('PointQALocal-both', 'PointQALocalDataset', write_point_qa, {'version': 'both'}),
    Case('PointQATwice-general-box', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'general', 'version': 'box'}),
    Case('PointQATwice-object-point', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'object', 'version': 'point'},
         coords={k: {'boxes': [], 'points': [[point]]} for k, (_, point) in POINT_QA_NORM.items()}),
    Case('PointQATwice-super-both', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'super', 'version': 'both'}),
    Case('V7W-box', 'V7WPointingDataset', write_v7w,
         coords={0: _box_groups(*[[b] for b in V7W_BOXES], [V7W_BOXES[2]])}),
    Case('V7W-point', 'V7WPointingDataset', write_v7w, {'version': 'point'},
         coords={0: {'boxes': [], 'points': [*[[p] for p in V7W_POINTS], [V7W_POINTS[2]]]}}),
    Case('V7W-box-answer-point', 'V7WPointingDataset', write_v7w, {'version': 'box', 'answer_format': 'point'},
         coords={0: {'boxes': [[b] for b in V7W_BOXES], 'points': [[V7W_POINTS[2]]]}}),
    Case('V7W-both-shuffled', 'V7WPointingDataset', write_v7w, {'version': 'both', 'shuffle_candidates': True}),
    Case('POPE', 'POPEDataset', write_pope),
    Case('POPE-short', 'POPEDataset', write_pope, {'answer': '{label}'}),
    *[Case(f'ScienceQA-{v}', 'ScienceQADataset', write_scienceqa, {'version': v})
      for v in ('answer', 'solution', 'lecture_solution')],
    Case('VQAv2', 'VQAv2Dataset', write_vqav2),
    Case('VQAv2-sentence', 'VQAv2Dataset', write_vqav2, {'answer_template': 'The answer is <answer>.'}),
    Case('PureVQA', 'PureVQADataset', write_vqa_test),
]
# Registered classes deliberately without a render case (with the reason); none at present.
EXCLUDED: dict[str, str] = {}


def test_table_covers_every_registered_dataset():
    covered = {case.type for case in CASES}
    assert covered | set(EXCLUDED) == set(DATASETS.module_dict), (
        f"registered datasets without a render case: {sorted(set(DATASETS.module_dict) - covered - set(EXCLUDED))}")
    assert not covered & set(EXCLUDED)
    assert len({case.id for case in CASES}) == len(CASES)


# -- rendering helpers ------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """Each fixture writer runs once into its own folder; returns writer -> constructor path arguments."""
    root = tmp_path_factory.mktemp('render')
    cache = {}

    def paths(write):
        if write not in cache:
            folder = root / write.__name__
            folder.mkdir()
            cache[write] = write(folder)
        return cache[write]

    return paths


def build_raw(case: Case, data_root):
    return DATASETS.build(dict(type=case.type, **data_root(case.write), **case.kwargs))


def formatted_turns(item) -> list[dict]:
    """The item's turns with boxes/points written as the model sees them (Expand2square, then normalised)."""
    image, target = Expand2square()(item['image'], item.get('target') or {})
    width, height = image.size
    target = target or {}
    boxes = [norm_box_xyxy(b, width, height) for b in target.get('boxes') or []]
    points = [norm_point_xy(p, width, height) for p in target.get('points') or []]
    formatter = PlainBoxFormatter()
    turns = [dict(turn, value=formatter(turn['value'], turn.get('boxes_seq'), turn.get('points_seq'), boxes, points))
             for turn in item['conversations']]
    if not any(IMAGE_PLACEHOLDER in turn['value'] for turn in turns):
        # LLaVA convention (text-only samples): the image comes first.
        turns[0] = dict(turns[0], value=f"{IMAGE_PLACEHOLDER} {turns[0]['value']}")
    return turns


def vicuna_text(turns, for_generation: bool) -> str:
    """vicuna_v1.1 written out: '{system} USER: {q} ASSISTANT: {a}</s>USER: ...'."""
    if for_generation:
        turns = turns[:-1]
    text = VICUNA_SYSTEM + ' '
    for turn in turns:
        text += f"USER: {turn['value']} " if turn['from'] == 'human' else f"ASSISTANT: {turn['value']}{END_OF_TURN}"
    return text + ('ASSISTANT:' if for_generation else '')


def decode_prompt(preprocessor, input_ids) -> str:
    """Decoded input_ids with the block of image tokens written back as one `<image>`; checks the block."""
    tok = preprocessor['text']
    image_id = tok.convert_tokens_to_ids(preprocessor['image_token'])
    ids = input_ids.tolist()
    positions = [t for t, v in enumerate(ids) if v == image_id]
    n = preprocessor['num_image_tokens']
    assert len(positions) == n and positions == list(range(positions[0], positions[0] + n))
    return tok.decode(ids[:positions[0] + 1] + ids[positions[-1] + 1:])


def assert_no_placeholder_left(text: str, tok, end_of_turns: int):
    assert text.startswith(tok.bos_token) and text.count(tok.bos_token) == 1
    assert text.count(END_OF_TURN) == end_of_turns
    assert text.count(IMAGE_PLACEHOLDER) == 1
    rest = text.replace(tok.bos_token, '').replace(END_OF_TURN, '').replace(IMAGE_PLACEHOLDER, '')
    assert TAG.findall(rest) == [], f"unreplaced placeholder(s) in {text!r}"


def label_runs(labels) -> list[list[int]]:
    runs, current = [], []
    for t, v in enumerate(labels.tolist()):
        if v != IGNORE_INDEX:
            current.append(t)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def case_params(cases):
    return [pytest.param(case, id=case.id) for case in cases]


# -- the checks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('case', case_params(CASES))
def test_train_render(case, preprocessor, data_root):
    tok = preprocessor['text']
    raw = build_raw(case, data_root)
    assert len(raw) > 0
    ds = SingleImageConvDataset(raw, preprocessor, mode='train', **CONV)
    if case.type == 'PureVQADataset':  # prediction only: its empty answers must not be trained on
        with pytest.raises(InvalidSampleError, match=r'PureVQA.*\[0\].*empty.*prediction-only'):
            ds[0]
        return
    for i in range(len(raw)):
        turns = formatted_turns(raw[i])
        answers = [turn['value'] for turn in turns if turn['from'] == 'gpt']
        sample = ds[i]
        ids, labels = sample['input_ids'], sample['labels']
        assert ds.skipped == [], f'{case.id}[{i}] skipped'
        assert labels.shape == ids.shape and len(ids) <= CONV['max_length']
        text = decode_prompt(preprocessor, ids)
        assert_no_placeholder_left(text, tok, end_of_turns=len(answers))
        assert text == tok.bos_token + vicuna_text(turns, for_generation=False)

        kept = labels != IGNORE_INDEX
        assert (labels[kept] == ids[kept]).all()
        runs = label_runs(labels)
        assert len(runs) == len(answers)  # one run per assistant turn, the user turns in between masked
        assert runs[-1][-1] == len(ids) - 1 and ids[-1].item() == tok.eos_token_id
        decoded = [tok.decode(ids[run]) for run in runs]
        # The first label token may carry the space after 'ASSISTANT:' ('▁The') or not ('▁' + '[' split apart);
        # everything after it is exactly the formatted answer and the end-of-turn marker.
        assert [d[1:] if d.startswith(' ') else d for d in decoded] == [a + END_OF_TURN for a in answers]
        assert tok.decode(labels[kept]) == ''.join(decoded)


@pytest.mark.parametrize('case', case_params(CASES))
def test_eval_render(case, preprocessor, data_root):
    tok = preprocessor['text']
    raw = build_raw(case, data_root)
    ds = SingleImageConvDataset(raw, preprocessor, mode='eval', **CONV)
    for i in range(len(raw)):
        turns = formatted_turns(raw[i])
        sample = ds[i]
        assert ds.skipped == [], f'{case.id}[{i}] skipped'
        text = decode_prompt(preprocessor, sample['input_ids'])
        assert text.endswith(' ASSISTANT:')
        assert_no_placeholder_left(text, tok, end_of_turns=sum(t['from'] == 'gpt' for t in turns) - 1)
        assert text == tok.bos_token + vicuna_text(turns, for_generation=True)
        assert tok.decode(sample['labels']) == turns[-1]['value']


@pytest.mark.parametrize('case', case_params([c for c in CASES if c.coords]))
def test_coordinates_match_hand_computed_values(case, preprocessor, data_root):
    """Boxes/points parsed back from the rendered training text equal the fixture's pixels, padded and normalised."""
    formatter = PlainBoxFormatter()
    ds = SingleImageConvDataset(build_raw(case, data_root), preprocessor, mode='train', **CONV)
    for i, expected in case.coords.items():
        text = decode_prompt(preprocessor, ds[i]['input_ids'])
        for kind, parsed in (('boxes', formatter.extract(text)), ('points', formatter.extract_points(text))):
            want = expected[kind]
            assert [len(g) for g in parsed] == [len(g) for g in want], f'{case.id}[{i}] {kind}: {parsed}'
            for got_group, want_group in zip(parsed, want, strict=True):
                for got, value in zip(got_group, want_group, strict=True):
                    assert got == pytest.approx(value, abs=1e-3), f'{case.id}[{i}] {kind}: {parsed} != {want}'
