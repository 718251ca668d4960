"""Every registered dataset class, rendered end to end for the tiny model through `SingleImageConvDataset`.

One table of cases (a dataset class, a few records in its real file format, constructor kwargs) drives
the checks; a test fails when a registered class has no case, so a new dataset cannot skip rendering.
Conversation settings are those of config/_base_/model/llava_tiny.py ('vicuna_v1.1', Expand2square)
with max_length raised to 1024 so that the longest chain-of-thought answers are never truncated (the
tiny model: 64 image tokens per `<image>`).

Per case and sample:
  train  the decoded prompt equals the vicuna text written here by hand (placeholders all filled, the
         image a single block of image tokens), the label tokens are exactly the gpt turns with their
         boxes/points formatted and the `</s>` that closes each assistant turn, and nothing is skipped;
  eval   the prompt ends with 'ASSISTANT:' and `labels` is the last gpt turn, formatted.
For one case per box/point-bearing dataset the coordinates parsed back from the rendered text are
compared with values computed by hand from the fixture's pixel coordinates. Where a dataset test already
has a fixture in the same format (tests/test_ds_*.py), its records and image sizes are reused here.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mllm.dataset.builder  # noqa: F401  (registers every dataset)
from mllm.dataset.process_function.box_formatter import PlainBoxFormatter
from mllm.dataset.process_function.conv_template import VICUNA_SYSTEM
from mllm.dataset.root import DATASETS, IGNORE_INDEX, IMAGE_PLACEHOLDER
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy, norm_point_xy
from mllm.dataset.validation import InvalidSampleError
from tests import test_ds_caption as caption_fx
from tests import test_ds_clevr as clevr_fx
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


# 96x64 -> padded 16 px above; 64x96 -> padded 16 px left; both divided by the side 96.
BOX_RECORD_BOXES = {0: [10 / 96, 21 / 96, 50 / 96, 56 / 96], 1: [16 / 96, 48 / 96, 80 / 96, 1.0]}


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


def write_gqa(root: Path) -> dict:
    """tools/prepare_data/gqa.py JSONL (scene-graph boxes in pixel xyxy, the executed program): test_ds_gqa's."""
    return write_files(root, 'images', gqa_fx.SIZES, 'GQA_val_balanced.jsonl', gqa_fx.RECORDS)


def write_clevr(root: Path) -> dict:
    """tools/prepare_data/clevr.py JSONL (the executed program, object centres in pixels): test_ds_clevr's."""
    write_images(root / 'images' / 'val', clevr_fx.IMAGES, color=(10, 200, 10, 255), mode='RGBA')
    return {'filename': write_jsonl(root / 'CLEVR_val.jsonl', clevr_fx.RECORDS),
            'image_folder': str(root / 'images' / 'val')}


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


# 100x60 -> padded 20 px above, divided by 100.
FLICKR_NORM = [[0.0, 0.3, 0.4, 0.8], [0.5, 0.2, 1.0, 0.5], [0.6, 0.5, 1.0, 0.8]]


def write_llava(root: Path) -> dict:
    """llava_v1_5_mix665k.json (one JSON array) of test_ds_instruct: two rounds, text only, one round."""
    return write_files(root, 'data', llava_fx.IMAGES, 'llava_v1_5_mix665k.json', llava_fx.SAMPLES, write_json)


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


# 120x80 -> padded 20 px above (/120); 60x100 -> padded 20 px left (/100).
POINT_QA_NORM = {0: ([0.0, 30 / 120, 40 / 120, 100 / 120], [20 / 120, 65 / 120]),
                 1: ([0.3, 0.0, 0.8, 0.3], [0.55, 0.15])}


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


# 90x60 -> padded 15 px above, divided by 90; the points are the candidates' centres.
V7W_BOXES = [[0.0, 15 / 90, 30 / 90, 35 / 90], [60 / 90, 55 / 90, 1.0, 75 / 90], [10 / 90, 40 / 90, 50 / 90, 70 / 90]]
V7W_POINTS = [[15 / 90, 25 / 90], [75 / 90, 65 / 90], [30 / 90, 55 / 90]]


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
# GQA after padding: 500x333 -> 83 px above, /500 (wall, pipe); 300x400 -> 50 px left, /400 (the two people).
W, P = [0.0, 83 / 500, 1.0, 283 / 500], [120 / 500, 123 / 500, 150 / 500, 273 / 500]
PERSON, PERSON2 = [60 / 400, 50 / 400, 160 / 400, 350 / 400], [200 / 400, 60 / 400, 340 / 400, 1.0]
# CLEVR objects 0-3 after padding: 480x320 -> 80 px above, /480.
OBJ = [[100 / 480, 280 / 480], [300 / 480, 230 / 480], [1.0, 399 / 480], [0.0, 180 / 480]]

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
    # qb-bc: the question's wall, then the steps' wall and pipe; the person, twice; the two people, twice.
    Case('GQA-qb-bc-coords', 'GQADataset', write_gqa, {'version': 'qb-bc'},
         coords={0: _box_groups([W], [W], [P]), 1: _box_groups([PERSON], [PERSON]),
                 2: _box_groups([PERSON, PERSON2], [PERSON, PERSON2])}),
    *[Case(f'CLEVR-{v}', 'CLEVRDataset', write_clevr, {'version': v}) for v in ('q-a', 'q-s')],
    # The blue sphere (1), then the same-shape one (3); the big cylinder (2); the union names 0, (1, 3), then 0, 1, 3.
    Case('CLEVR-q-bs', 'CLEVRDataset', write_clevr, {'version': 'q-bs'},
         coords={0: {'boxes': [], 'points': [[OBJ[1]], [OBJ[3]]]},
                 1: {'boxes': [], 'points': [[OBJ[2]]]},
                 2: {'boxes': [], 'points': [[OBJ[0]], [OBJ[1], OBJ[3]], [OBJ[0], OBJ[1], OBJ[3]]]}}),
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
