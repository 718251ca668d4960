"""Every registered dataset class, rendered end to end for the tiny model through `SingleImageConvDataset`.

One table of cases (a dataset class, a few records in its real file format, constructor kwargs) drives
the checks; a test fails when a registered class has no case, so a new dataset cannot skip rendering.
Conversation settings are those of config/_base_/model/llava_tiny.py ('vicuna_v1.1', Expand2square)
with max_length raised to 1024 so that the longest chain-of-thought answers are never truncated (the
tiny model: 64 image tokens per `<image>`).

Per case and sample:
  train  the decoded prompt equals the vicuna text written here by hand (placeholders all filled, each
         image a single block of image tokens, none for a text-only item), the label tokens are exactly
         the gpt turns with their boxes/points written out and the `</s>` that closes each assistant turn,
         and nothing is skipped;
  eval   the prompt ends with 'ASSISTANT:' and `labels` is the last gpt turn, written out.
Boxes and points are never computed by the code under test: every coordinate a fixture uses has its text
in BOX_TEXT / POINT_TEXT, normalised by hand (expand-to-square shift and division worked out in the
comments), so a bug in Expand2square, the normalisation or the formatter changes the rendered text and
fails the case. Where a dataset test already has a fixture in the same format (tests/test_ds_*.py), its
records and image sizes are reused here.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mllm.dataset.builder  # noqa: F401  (registers every dataset)
from mllm.dataset.process_function.conv_template import VICUNA_SYSTEM
from mllm.dataset.root import BOXES_PLACEHOLDER, DATASETS, IGNORE_INDEX, IMAGE_PLACEHOLDER, POINTS_PLACEHOLDER
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.validation import InvalidSampleError
from tests import test_ds_caption as caption_fx
from tests import test_ds_clevr as clevr_fx
from tests import test_ds_gpt4gen as gpt4gen_fx
from tests import test_ds_gqa as gqa_fx
from tests import test_ds_instruct as llava_fx
from tests import test_ds_pope as pope_fx
from tests import test_ds_scienceqa as sqa_fx
from tests import test_ds_vqav2 as vqa_fx
from tests.helpers import label_runs, save_png, write_images, write_json, write_jsonl

CONV = dict(conv_template='vicuna_v1.1', transform=dict(type='Expand2square'), max_length=1024)
END_OF_TURN = '</s>'  # vicuna_v1.1 closes every assistant turn with it (trained on)
# Anything looking like a tag left in the rendered text: '<expr>', '<question>', '<ph_st>', '</objs>', ...
TAG = re.compile(r'</?[A-Za-z_][\w-]*>')


# -- fixtures in each dataset's real format: write(folder) -> the path arguments of the constructor ------------
def write_files(root: Path, image_folder: str, sizes: dict, filename: str, data, write=write_jsonl) -> dict:
    """`sizes` (name -> (w, h)) as PNGs under root/image_folder and `data` as root/filename."""
    for name, size in sizes.items():
        save_png(root / image_folder / name, size)
    return {'filename': write(root / filename, data), 'image_folder': str(root / image_folder)}


def write_box_records(root: Path) -> dict:
    """Shikra-style one-box JSONL (REC_ref3_*.jsonl, GC_genome196_*.jsonl): img_path, expression, bbox."""
    records = [
        {'img_path': 'COCO_train2014_000000000009.jpg', 'expression': 'the red circle', 'bbox': [10, 5, 50, 40],
         'height': 64, 'width': 96, 'ref_id': 3},
        # touches the left, right and bottom border
        {'img_path': 'VG_100K/2.jpg', 'expression': 'the blue square at the bottom', 'bbox': [0, 48, 64, 96]},
    ]
    sizes = {'COCO_train2014_000000000009.jpg': (96, 64), 'VG_100K/2.jpg': (64, 96)}
    return write_files(root, 'images', sizes, 'rec.jsonl', records)



def write_coco_captions(root: Path) -> dict:
    """Official annotations/captions_val2014.json (COCO format): the two captioned images of test_ds_caption."""
    images = caption_fx.IMAGES[:2]
    return write_files(root, 'val2014', {name: size for _, name, size in images}, 'captions_val2014.json',
                       caption_fx.captions_json(images=images), write_json)


def write_karpathy(root: Path) -> dict:
    """Karpathy's dataset_coco.json; image_folder is the COCO root holding val2014/."""
    _, name, size = caption_fx.IMAGES[0]
    save_png(root / 'val2014' / name, size)
    image = caption_fx.karpathy_image(0, 'val2014', name, 'test', 42, ['A dog by a bike.', 'A brown dog.'])
    return {'filename': write_json(root / 'dataset_coco.json', {'dataset': 'coco', 'images': [image]}),
            'image_folder': str(root)}


def write_shikra_captions(root: Path) -> dict:
    """Shikra's CAP_coco2014_train.jsonl (one caption a line) of test_ds_caption, on COCO train2014 images."""
    sizes = {'COCO_train2014_000000000009.jpg': (64, 48), 'COCO_train2014_000000000025.jpg': (40, 60)}
    return write_files(root, 'train2014', sizes, 'CAP_coco2014_train.jsonl', caption_fx.SHIKRA_LINES)


def write_gqa(root: Path) -> dict:
    """tools/prepare_data/gqa.py JSONL (scene-graph boxes in pixel xyxy, the executed program): test_ds_gqa's."""
    return write_files(root, 'images', gqa_fx.SIZES, 'GQA_val_balanced.jsonl', gqa_fx.RECORDS)


def write_clevr(root: Path) -> dict:
    """tools/prepare_data/clevr.py JSONL (the executed program, object centres in pixels): test_ds_clevr's."""
    write_images(root / 'images' / 'val', clevr_fx.IMAGES, color=(10, 200, 10, 255), mode='RGBA')
    return {'filename': write_jsonl(root / 'CLEVR_val.jsonl', clevr_fx.RECORDS),
            'image_folder': str(root / 'images' / 'val')}


def write_clevr_shikra(root: Path) -> dict:
    """Shikra's CLEVR_val_questions_with_ans.jsonl + CLEVR_val_scenes.jsonl (joined by line) of test_ds_clevr."""
    write_images(root / 'images' / 'val', {'CLEVR_val_000000.png': (480, 320), 'CLEVR_val_000001.png': (480, 320)},
                 color=(10, 200, 10, 255), mode='RGBA')
    return {'filename': write_jsonl(root / 'CLEVR_val_questions_with_ans.jsonl', clevr_fx.SHIKRA_QUESTIONS),
            'scene_graph_file': write_jsonl(root / 'CLEVR_val_scenes.jsonl',
                                            [clevr_fx.SCENES['scenes'][0], clevr_fx.SCENE_1]),
            'image_folder': str(root / 'images' / 'val')}


def write_gpt4gen_boxcot(root: Path) -> dict:
    """Shikra's GPT4GEN_BoxCoT_train.jsonl of test_ds_gpt4gen (boxes in the chain of thought only)."""
    files = gpt4gen_fx.write_gpt4gen(root)
    return {'filename': files['boxcot'], 'image_folder': files['images']}


def write_gpt4gen_rd(root: Path) -> dict:
    """Shikra's GPT4GEN_RD_BoxCoT_train.jsonl of test_ds_gpt4gen (boxes in the question and the answer)."""
    files = gpt4gen_fx.write_gpt4gen(root)
    return {'filename': files['rd'], 'image_folder': files['images']}


FLICKR_BOXES = [[0, 10, 40, 60], [50, 0, 100, 30], [60, 30, 100, 60]]  # on 100x60; boxes on every border


def write_flickr(root: Path) -> dict:
    """Shikra's CWB_flickr30k_*.jsonl: the image is `<image_id>.jpg`, phrases marked with <ph_st>/<ph_ed>."""
    records = [
        {'id': 0, 'image_id': '36979', 'boxes': FLICKR_BOXES, 'boxes_seq': [[0], [1, 2]],
         'sentence': '<ph_st>A naïve child<ph_ed> holds <ph_st>two kites<ph_ed> .'},
        {'id': 1, 'image_id': '36979', 'boxes': FLICKR_BOXES[:2], 'boxes_seq': [[0], [1], [0]],
         'sentence': '<ph_st>A child<ph_ed> and <ph_st>a kite<ph_ed> ; <ph_st>A child<ph_ed> smiles .'},
    ]
    return write_files(root, 'images', {'36979.jpg': (100, 60)}, 'CWB_flickr30k_train.jsonl', records)


def write_llava(root: Path) -> dict:
    """llava_v1_5_mix665k.json (one JSON array) of test_ds_instruct: two rounds, text only, one round."""
    return write_files(root, 'data', llava_fx.IMAGES, 'llava_v1_5_mix665k.json', llava_fx.SAMPLES, write_json)


def write_llava_jsonl(root: Path) -> dict:
    """Shikra's llava_instruct_150k.jsonl (one sample a line, bare COCO-2017 names) of test_ds_instruct."""
    sizes = {'000000033471.jpg': (100, 60), '000000052846.jpg': (64, 40)}
    return write_files(root, 'train2017', sizes, 'llava_instruct_150k.jsonl', llava_fx.SHIKRA_SAMPLES)


def write_point_qa(root: Path, twice: bool = False) -> dict:
    """Shikra's pointQA_local_*.jsonl: file_path, question, answer, bbox, point (pixels of the original image)."""
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
    sizes = {'VG_100K/wide.jpg': (120, 80), 'VG_100K/tall.jpg': (60, 100)}
    return write_files(root, 'images', sizes, 'pointQA.jsonl', records)


def write_point_qa_twice(root: Path) -> dict:
    return write_point_qa(root, twice=True)



V7W_CANDIDATES = [[0, 0, 30, 20], [60, 40, 90, 60], [10, 25, 50, 55]]  # on 90x60


def write_v7w(root: Path) -> dict:
    """tools/prepare_data/visual7w.py JSONL (answer_index) and a record in Shikra's layout (answer box)."""
    records = [
        {'img_path': 'v7w_1.jpg', 'question': 'Which cup is full?', 'candidates': V7W_CANDIDATES, 'answer_index': 2,
         'width': 90, 'height': 60, 'qa_id': 11},
        {'file_path': 'v7w_2.jpg', 'question': 'Which sign says stop?',
         'candidates': [[0, 0, 50, 40], [5, 60, 45, 100], [20, 20, 30, 30]], 'answer': [5, 60, 45, 100]},
    ]
    return write_files(root, 'images', {'v7w_1.jpg': (90, 60), 'v7w_2.jpg': (50, 100)}, 'v7w_pointing_test.jsonl',
                       records)



def write_pope(root: Path) -> dict:
    """The official coco_pope_random.json (JSON lines) of test_ds_pope."""
    return write_files(root, 'val2014', pope_fx.IMAGES, 'coco_pope_random.json', pope_fx.LINES)


def write_scienceqa(root: Path) -> dict:
    """The official release: problems.json and images/<split>/<pid>/image.png."""
    problems = {
        '5': sqa_fx.problem('Which of these states is farthest north?', ['Texas', 'Ohio', 'Maine'], 2, 'image.png',
                            'test', hint='Look at the map.', lecture='Maps have four cardinal directions.',
                            solution='Maine is farthest north.'),
        '6': sqa_fx.problem('Which tense does the sentence use?', ['past', 'future'], 0, None, 'test'),  # text only
        '7': sqa_fx.problem('What is the capital of Utah?', ['Salt Lake City', 'Denver'], 0, 'image.png', 'test'),
    }
    sizes = {'test/5/image.png': (60, 90), 'test/7/image.png': (80, 50)}
    return write_files(root, 'images', sizes, 'problems.json', problems, write_json)


def write_vqav2(root: Path) -> dict:
    """tools/prepare_data/vqav2.py JSONL (the official annotation nested under 'annotation') of test_ds_vqav2."""
    return write_files(root, 'val2014', vqa_fx.SIZES, 'vqav2_val.jsonl', vqa_fx.RECORDS)


def write_vqa_test(root: Path) -> dict:
    """tools/prepare_data/vqav2.py JSONL of test-dev: questions without answers."""
    records = [{'question_id': 1000, 'image_id': 1, 'image_path': 'COCO_test2015_000000000001.jpg',
                'question': 'Is the sky blue?'}]
    return write_files(root, 'test2015', {'COCO_test2015_000000000001.jpg': (80, 40)}, 'vqav2_testdev.jsonl', records)


# -- the hand-normalised coordinates ------------------------------------------------------------------------------
# (image size, pixel coordinates of the original image) -> the text the plain formatter must write. Expand2square
# pads the short side to the long one, (long - short) // 2 px before the image, and every value is then divided
# by the long side (the square's side) and printed with 3 decimals.
BOX_TEXT = {
    # REC/REG/GC: 96x64 -> 16 px above, /96; 64x96 -> 16 px left, /96.
    ((96, 64), (10, 5, 50, 40)): '0.104,0.219,0.521,0.583',     # (10, 21, 50, 56) / 96
    ((64, 96), (0, 48, 64, 96)): '0.167,0.500,0.833,1.000',     # (16, 48, 80, 96) / 96
    # Flickr30k: 100x60 -> 20 px above, /100.
    ((100, 60), (0, 10, 40, 60)): '0.000,0.300,0.400,0.800',    # (0, 30, 40, 80) / 100
    ((100, 60), (50, 0, 100, 30)): '0.500,0.200,1.000,0.500',   # (50, 20, 100, 50) / 100
    ((100, 60), (60, 30, 100, 60)): '0.600,0.500,1.000,0.800',  # (60, 50, 100, 80) / 100
    # PointQA: 120x80 -> 20 px above, /120; 60x100 -> 20 px left, /100.
    ((120, 80), (0, 10, 40, 80)): '0.000,0.250,0.333,0.833',    # (0, 30, 40, 100) / 120
    ((60, 100), (10, 0, 60, 30)): '0.300,0.000,0.800,0.300',    # (30, 0, 80, 30) / 100
    # GQA: 500x333 -> (500 - 333) // 2 = 83 px above, /500; 300x400 -> 50 px left, /400.
    ((500, 333), (0, 0, 500, 200)): '0.000,0.166,1.000,0.566',     # (0, 83, 500, 283) / 500
    ((500, 333), (120, 40, 150, 190)): '0.240,0.246,0.300,0.546',  # (120, 123, 150, 273) / 500
    ((300, 400), (0, 300, 80, 400)): '0.125,0.750,0.325,1.000',    # (50, 300, 130, 400) / 400
    ((300, 400), (10, 50, 110, 350)): '0.150,0.125,0.400,0.875',   # (60, 50, 160, 350) / 400
    ((300, 400), (150, 60, 290, 400)): '0.500,0.150,0.850,1.000',  # (200, 60, 340, 400) / 400
    # Visual7W: 90x60 -> 15 px above, /90; 50x100 -> 25 px left, /100.
    ((90, 60), (0, 0, 30, 20)): '0.000,0.167,0.333,0.389',       # (0, 15, 30, 35) / 90
    ((90, 60), (60, 40, 90, 60)): '0.667,0.611,1.000,0.833',     # (60, 55, 90, 75) / 90
    ((90, 60), (10, 25, 50, 55)): '0.111,0.444,0.556,0.778',     # (10, 40, 50, 70) / 90
    ((50, 100), (0, 0, 50, 40)): '0.250,0.000,0.750,0.400',      # (25, 0, 75, 40) / 100
    ((50, 100), (5, 60, 45, 100)): '0.300,0.600,0.700,1.000',    # (30, 60, 70, 100) / 100
    ((50, 100), (20, 20, 30, 30)): '0.450,0.200,0.550,0.300',    # (45, 20, 55, 30) / 100
    # GPT4Gen: 80x120 -> 20 px left, /120; 150x100 -> 25 px above, /150.
    ((80, 120), (0, 0, 40, 60)): '0.167,0.000,0.500,0.500',      # (20, 0, 60, 60) / 120
    ((80, 120), (30, 60, 80, 120)): '0.417,0.500,0.833,1.000',   # (50, 60, 100, 120) / 120
    ((80, 120), (10, 90, 70, 110)): '0.250,0.750,0.750,0.917',   # (30, 90, 90, 110) / 120
    ((150, 100), (15, 0, 75, 50)): '0.100,0.167,0.500,0.500',    # (15, 25, 75, 75) / 150
    ((150, 100), (90, 40, 150, 100)): '0.600,0.433,1.000,0.833',  # (90, 65, 150, 125) / 150
}
POINT_TEXT = {
    # PointQA: as the boxes above.
    ((120, 80), (20, 45)): '0.167,0.542',   # (20, 65) / 120
    ((60, 100), (35, 15)): '0.550,0.150',   # (55, 15) / 100 (no point in the record: the box centre)
    # Visual7W: the candidates' centres.
    ((90, 60), (15, 10)): '0.167,0.278',    # (15, 25) / 90
    ((90, 60), (75, 50)): '0.833,0.722',    # (75, 65) / 90
    ((90, 60), (30, 40)): '0.333,0.611',    # (30, 55) / 90
    ((50, 100), (25, 20)): '0.500,0.200',   # (50, 20) / 100
    ((50, 100), (25, 80)): '0.500,0.800',   # (50, 80) / 100
    ((50, 100), (25, 25)): '0.500,0.250',   # (50, 25) / 100
    # CLEVR objects: 480x320 -> 80 px above, /480.
    ((480, 320), (100, 200)): '0.208,0.583',  # (100, 280) / 480
    ((480, 320), (300, 150)): '0.625,0.479',  # (300, 230) / 480
    ((480, 320), (480, 319)): '1.000,0.831',  # (480, 399) / 480; 0.83125 -> 0.831
    ((480, 320), (0, 100)): '0.000,0.375',    # (0, 180) / 480 (Shikra's scene has x = -2: clamped to 0)
    ((480, 320), (400, 240)): '0.833,0.667',  # (400, 320) / 480
}


def images_of(item) -> list:
    image = item['image']
    return list(image) if isinstance(image, (list, tuple)) else [image]


def coordinate_texts(item) -> list[tuple[dict, tuple]]:
    """(table, key) of every box/point the item's turns use, in reading order."""
    images = images_of(item)
    size = images[0].size if images else None
    target = item.get('target') or {}
    used = []
    for turn in item['conversations']:
        for table, seq_key, pool in ((BOX_TEXT, 'boxes_seq', target.get('boxes') or []),
                                     (POINT_TEXT, 'points_seq', target.get('points') or [])):
            for group in turn.get(seq_key) or []:
                used += [(table, (size, tuple(pool[i]))) for i in group]
    return used


def expected_turns(item) -> list[dict]:
    """The item's turns as the model must see them: every `<boxes>` / `<points>` replaced by the hand-written
    text of its coordinates (several in one bracket, separated by ';'), the image placeholder(s) put first
    where the conversation has none (LLaVA's convention, applied by the renderer)."""
    images = images_of(item)
    size = images[0].size if images else None
    target = item.get('target') or {}

    def fill(value, placeholder, seq, pool, table):
        pieces = value.split(placeholder)
        seq = seq or []
        assert len(pieces) - 1 == len(seq), f'{len(pieces) - 1} {placeholder} for {len(seq)} groups'
        out = pieces[0]
        for group, rest in zip(seq, pieces[1:], strict=True):
            keys = [(size, tuple(pool[i])) for i in group]
            missing = [k for k in keys if k not in table]
            assert not missing, f'no hand-written text for {missing}: add it to the table'
            out += '[' + ';'.join(table[k] for k in keys) + ']' + rest
        return out

    turns = []
    for turn in item['conversations']:
        value = fill(turn['value'], BOXES_PLACEHOLDER, turn.get('boxes_seq'), target.get('boxes') or [], BOX_TEXT)
        value = fill(value, POINTS_PLACEHOLDER, turn.get('points_seq'), target.get('points') or [], POINT_TEXT)
        turns.append(dict(turn, value=value))
    if images and not any(IMAGE_PLACEHOLDER in turn['value'] for turn in turns):
        turns[0] = dict(turns[0], value=IMAGE_PLACEHOLDER * len(images) + ' ' + turns[0]['value'])
    return turns


# -- the table --------------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    type: str
    write: Callable[[Path], dict]
    kwargs: dict = field(default_factory=dict)


GQA_VERSIONS = ('q-a', 'q-c', 'q-bl', 'q-bc', 'q-s', 'q-bs', 'qb-a', 'qb-bc', 'qbp-bl')

CASES = [
    Case('REC', 'RECDataset', write_box_records),
    Case('REC-answer', 'RECDataset', write_box_records, {'answer': 'It is at <boxes>.'}),
    Case('REG', 'REGDataset', write_box_records),
    Case('GC', 'GCDataset', write_box_records),
    Case('COCOCaption-train', 'COCOCaptionDataset', write_coco_captions, {'mode': 'train'}),
    Case('COCOCaption-eval', 'COCOCaptionDataset', write_coco_captions, {'mode': 'eval'}),
    Case('COCOCaption-karpathy', 'COCOCaptionDataset', write_karpathy, {'split': 'test'}),
    Case('COCOCaption-shikra-jsonl', 'COCOCaptionDataset', write_shikra_captions),
    *[Case(f'GQA-{v}', 'GQADataset', write_gqa, {'version': v}) for v in GQA_VERSIONS],
    *[Case(f'CLEVR-{v}', 'CLEVRDataset', write_clevr, {'version': v}) for v in ('q-a', 'q-s', 'q-bs')],
    *[Case(f'CLEVR-shikra-{v}', 'CLEVRDataset', write_clevr_shikra, {'version': v}) for v in ('q-a', 'q-bs')],
    Case('Flickr30k', 'Flickr30kDataset', write_flickr),
    Case('Flickr30kReverse', 'Flickr30kReverseDataset', write_flickr),
    *[Case(f'GPT4Gen-{v}', 'GPT4GenDataset', write_gpt4gen_boxcot, {'version': v}) for v in ('a', 'c', 'bc')],
    *[Case(f'GPT4Gen-RD-{v}', 'GPT4GenDataset', write_gpt4gen_rd, {'version': v}) for v in ('a', 'bc')],
    Case('LLaVAInstruct', 'LLaVAInstructDataset', write_llava),  # the text-only sample has no image
    Case('LLaVAInstruct-skip', 'LLaVAInstructDataset', write_llava, {'text_only': 'skip'}),
    Case('LLaVAInstruct-blank', 'LLaVAInstructDataset', write_llava, {'text_only': 'blank'}),
    Case('LLaVAInstruct-shikra-jsonl', 'LLaVAInstructDataset', write_llava_jsonl),
    Case('PointQALocal-box', 'PointQALocalDataset', write_point_qa, {'version': 'box'}),
    Case('PointQALocal-point', 'PointQALocalDataset', write_point_qa, {'version': 'point'}),
    Case('PointQALocal-both', 'PointQALocalDataset', write_point_qa, {'version': 'both'}),
    Case('PointQATwice-general-box', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'general', 'version': 'box'}),
    Case('PointQATwice-object-point', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'object', 'version': 'point'}),
    Case('PointQATwice-super-both', 'PointQATwiceDataset', write_point_qa_twice,
         {'question_type': 'super', 'version': 'both'}),
    Case('V7W-box', 'V7WPointingDataset', write_v7w),
    Case('V7W-point', 'V7WPointingDataset', write_v7w, {'version': 'point'}),
    Case('V7W-box-answer-point', 'V7WPointingDataset', write_v7w, {'version': 'box', 'answer_format': 'point'}),
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
EXCLUDED: dict[str, str] = {
    # multi-image in-context episodes: rendered in tests/test_ds_mimicit.py (exact chunk text, one image per media)
    'MIMICITDataset': 'tests/test_ds_mimicit.py::test_in_context_episode_renders_each_image_at_its_place',
    # link-context episodes: exact prompts in tests/test_ds_isekai.py and tests/test_ds_lcl_episodes.py
    'ISEKAIDataset': 'tests/test_ds_isekai.py::test_two_way_two_shot_exact_prompts_and_order',
    'LCLEpisodeDataset': 'tests/test_ds_lcl_episodes.py',
    'LCLTestEpisodeDataset': 'tests/test_ds_lcl_episodes.py',
    # text-only warm-up episodes: exact text and token-by-token parity with the image item in
    # tests/test_ds_recall_episodes.py
    'RecallEpisodeDataset': 'tests/test_ds_recall_episodes.py::test_tokens_match_the_image_item_of_the_same_plan',
}


def test_table_covers_every_registered_dataset():
    covered = {case.type for case in CASES}
    assert covered | set(EXCLUDED) == set(DATASETS.module_dict), (
        f"registered datasets without a render case: {sorted(set(DATASETS.module_dict) - covered - set(EXCLUDED))}")
    assert not covered & set(EXCLUDED)
    assert len({case.id for case in CASES}) == len(CASES)


def test_every_hand_written_coordinate_is_used(data_root):
    """The tables hold exactly the coordinates the fixtures use (no stale or mistyped entry passes unseen)."""
    used = {'boxes': set(), 'points': set()}
    for case in CASES:
        raw = build_raw(case, data_root)
        for i in range(len(raw)):
            for table, key in coordinate_texts(raw[i]):
                used['boxes' if table is BOX_TEXT else 'points'].add(key)
    assert used['boxes'] == set(BOX_TEXT)
    assert used['points'] == set(POINT_TEXT)


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


def vicuna_text(turns, for_generation: bool) -> str:
    """vicuna_v1.1 written out: '{system} USER: {q} ASSISTANT: {a}</s>USER: ...'."""
    if for_generation:
        turns = turns[:-1]
    text = VICUNA_SYSTEM + ' '
    for turn in turns:
        text += f"USER: {turn['value']} " if turn['from'] == 'human' else f"ASSISTANT: {turn['value']}{END_OF_TURN}"
    return text + ('ASSISTANT:' if for_generation else '')


def decode_prompt(preprocessor, input_ids, num_images: int = 1) -> str:
    """Decoded input_ids with the block of image tokens written back as one `<image>`; checks the block
    (a text-only item has no image token at all)."""
    tok = preprocessor['text']
    image_id = tok.convert_tokens_to_ids(preprocessor['image_token'])
    ids = input_ids.tolist()
    positions = [t for t, v in enumerate(ids) if v == image_id]
    if num_images == 0:
        assert positions == []
        return tok.decode(ids)
    n = preprocessor['num_image_tokens']
    assert num_images == 1 and len(positions) == n and positions == list(range(positions[0], positions[0] + n))
    return tok.decode(ids[:positions[0] + 1] + ids[positions[-1] + 1:])


def assert_no_placeholder_left(text: str, tok, end_of_turns: int, num_images: int = 1):
    assert text.startswith(tok.bos_token) and text.count(tok.bos_token) == 1
    assert text.count(END_OF_TURN) == end_of_turns
    assert text.count(IMAGE_PLACEHOLDER) == num_images
    rest = text.replace(tok.bos_token, '').replace(END_OF_TURN, '').replace(IMAGE_PLACEHOLDER, '')
    assert TAG.findall(rest) == [], f"unreplaced placeholder(s) in {text!r}"


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
        turns = expected_turns(raw[i])
        num_images = len(images_of(raw[i]))
        answers = [turn['value'] for turn in turns if turn['from'] == 'gpt']
        sample = ds[i]
        ids, labels = sample['input_ids'], sample['labels']
        assert ds.skipped == [], f'{case.id}[{i}] skipped'
        assert labels.shape == ids.shape and len(ids) <= CONV['max_length']
        text = decode_prompt(preprocessor, ids, num_images)
        assert_no_placeholder_left(text, tok, end_of_turns=len(answers), num_images=num_images)
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
        turns = expected_turns(raw[i])
        num_images = len(images_of(raw[i]))
        sample = ds[i]
        assert ds.skipped == [], f'{case.id}[{i}] skipped'
        text = decode_prompt(preprocessor, sample['input_ids'], num_images)
        assert text.endswith(' ASSISTANT:')
        assert_no_placeholder_left(text, tok, end_of_turns=sum(t['from'] == 'gpt' for t in turns) - 1,
                                   num_images=num_images)
        assert text == tok.bos_token + vicuna_text(turns, for_generation=True)
        assert tok.decode(sample['labels']) == turns[-1]['value']
