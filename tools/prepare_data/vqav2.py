"""Convert the official VQAv2 release (GT-Vision-Lab/VQA format) to mllm JSONL, one line per question.

Reads, from the folder given as --vqa-root (the unzipped official archives from visualqa.org:
v2_Questions_Train_mscoco.zip, v2_Questions_Val_mscoco.zip, v2_Questions_Test_mscoco.zip,
v2_Annotations_Train_mscoco.zip, v2_Annotations_Val_mscoco.zip):
    v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
    v2_mscoco_{train2014,val2014}_annotations.json        (test and test-dev have no answers)
either all in --vqa-root itself (flat) or in the official API's layout (GT-Vision-Lab/VQA README):
    <vqa-root>/Questions/v2_OpenEnded_mscoco_..._questions.json
    <vqa-root>/Annotations/v2_mscoco_..._annotations.json
Each file is looked for flat first, then in its sub-folder; a missing one names both places.
Images are the COCO ones: COCO_train2014_<id:012d>.jpg in train2014/, COCO_val2014_... in val2014/,
and test and test-dev both use COCO_test2015_... in test2015/ (test2015.zip from cocodataset.org).

Writes <out-dir>/vqav2_<subtype>.jsonl, e.g. vqav2_val2014.jsonl, with lines
    {"question_id": 262148000, "image_id": 262148, "image_path": "COCO_val2014_000000262148.jpg",
     "question": "Where is he looking?", "annotation": {<the official annotation: question_type,
     answer_type, multiple_choice_answer, answers: [{answer, answer_confidence, answer_id}] x10>}}
(no "annotation" for test/test-dev). `image_path` is relative to the split's image folder.

    python tools/prepare_data/vqav2.py --vqa-root /data/vqav2 --out-dir /data/mllm_annotations \
        --splits train val test-dev
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import find_file, read_json, write_jsonl

# split name -> (subtype in the official file names, COCO image subtype holding its images)
SPLITS = {
    'train': ('train2014', 'train2014'),
    'val': ('val2014', 'val2014'),
    'test-dev': ('test-dev2015', 'test2015'),
    'test': ('test2015', 'test2015'),
}
ANNOTATED = ('train', 'val')
# Sub-folders of the official VQA API layout, tried after --vqa-root itself.
QUESTIONS_DIR, ANNOTATIONS_DIR = 'Questions', 'Annotations'


class ConversionError(ValueError):
    """The official files are missing or inconsistent; the message names the file and the question."""


def _split_info(split: str) -> tuple[str, str]:
    if split not in SPLITS:
        raise ConversionError(f"unknown VQAv2 split {split!r}; choose from {sorted(SPLITS)}")
    return SPLITS[split]


def questions_filename(split: str) -> str:
    return f"v2_OpenEnded_mscoco_{_split_info(split)[0]}_questions.json"


def annotations_filename(split: str) -> str:
    return f"v2_mscoco_{_split_info(split)[0]}_annotations.json"


def output_filename(split: str) -> str:
    return f"vqav2_{_split_info(split)[0]}.jsonl"


def image_filename(split: str, image_id: int) -> str:
    return f"COCO_{_split_info(split)[1]}_{int(image_id):012d}.jpg"


def convert(questions: dict, annotations: dict | None, split: str, questions_name: str = 'questions',
            annotations_name: str = 'annotations') -> list[dict]:
    """Records (one per question, in the questions file's order) from the parsed official JSONs.

    `annotations` is required for train/val and ignored for test/test-dev. The *_name arguments
    only label error messages.
    """
    subtype = _split_info(split)[0]
    declared = questions.get('data_subtype')
    if declared is not None and declared != subtype:
        raise ConversionError(f"{questions_name}: data_subtype is {declared!r}, expected {subtype!r} for "
                              f"split {split!r}")
    if not isinstance(questions.get('questions'), list):
        raise ConversionError(f"{questions_name}: no 'questions' list (not a VQA questions file?)")

    by_qid = None
    if split in ANNOTATED:
        if annotations is None:
            raise ConversionError(f"split {split!r} needs its annotations file ({annotations_filename(split)})")
        if not isinstance(annotations.get('annotations'), list):
            raise ConversionError(f"{annotations_name}: no 'annotations' list (not a VQA annotations file?)")
        by_qid = {}
        for k, ann in enumerate(annotations['annotations']):
            missing = [f for f in ('question_id', 'answers') if f not in ann]
            if missing:
                raise ConversionError(f"{annotations_name}: annotation {k} lacks {missing}")
            if not isinstance(ann['answers'], list) or not ann['answers']:
                raise ConversionError(f"{annotations_name}: question_id {ann['question_id']} has no answers")
            by_qid[ann['question_id']] = ann

    records, seen = [], set()
    for k, q in enumerate(questions['questions']):
        missing = [f for f in ('image_id', 'question', 'question_id') if f not in q]
        if missing:
            raise ConversionError(f"{questions_name}: question {k} lacks {missing}")
        qid = q['question_id']
        if qid in seen:
            raise ConversionError(f"{questions_name}: question_id {qid} appears twice")
        seen.add(qid)
        record = {'question_id': qid, 'image_id': q['image_id'], 'image_path': image_filename(split, q['image_id']),
                  'question': q['question']}
        if by_qid is not None:
            ann = by_qid.get(qid)
            if ann is None:
                raise ConversionError(f"{annotations_name}: no annotation for question_id {qid} ({questions_name})")
            if ann.get('image_id', q['image_id']) != q['image_id']:
                raise ConversionError(f"{annotations_name}: question_id {qid} has image_id {ann['image_id']} but "
                                      f"{questions_name} says {q['image_id']}")
            # The official annotation minus the ids already at the top level.
            record['annotation'] = {key: value for key, value in ann.items() if key not in ('question_id', 'image_id')}
        records.append(record)
    return records


def convert_split(vqa_root: str, split: str) -> list[dict]:
    """Read the official files of `split` from `vqa_root` (flat or Questions/ + Annotations/), convert them."""
    q_path = find_file(questions_filename(split), [vqa_root, os.path.join(vqa_root, QUESTIONS_DIR)])
    questions = read_json(q_path, ConversionError)
    a_path, annotations = None, None
    if split in ANNOTATED:
        a_path = find_file(annotations_filename(split), [vqa_root, os.path.join(vqa_root, ANNOTATIONS_DIR)])
        annotations = read_json(a_path, ConversionError)
    return convert(questions, annotations, split, questions_name=q_path, annotations_name=a_path or 'annotations')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--vqa-root', required=True,
                        help='folder with the unzipped official question/annotation JSONs, flat or in '
                             'Questions/ and Annotations/')
    parser.add_argument('--out-dir', required=True,
                        help='where to write vqav2_<subtype>.jsonl (the {annotations} root)')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test-dev'], choices=sorted(SPLITS))
    args = parser.parse_args(argv)
    for split in args.splits:
        try:
            records = convert_split(args.vqa_root, split)
        except ConversionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except FileNotFoundError as e:
            print(f"error: {e} (--vqa-root)", file=sys.stderr)
            return 1
        out = os.path.join(args.out_dir, output_filename(split))
        write_jsonl(records, out)
        print(f"{split}: {len(records)} questions -> {out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
