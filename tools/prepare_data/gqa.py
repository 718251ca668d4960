"""Convert the official GQA release (questions + scene graphs) to the JSONL read by `GQADataset`.

Official files (https://cs.stanford.edu/people/dorarad/gqa/download.html):

    questions1.2.zip  -> {split}_balanced_questions.json (train, val, testdev, ...), or {split}_all_questions.json
                         (train_all_questions/train_all_questions_{0..9}.json for train): dict qid -> question
    sceneGraphs.zip   -> train_sceneGraphs.json, val_sceneGraphs.json: dict imageId -> {width, height, objects}
                         (no scene graphs are released for testdev/test/challenge)
    images.zip        -> images/{imageId}.jpg  (the {gqa}/images folder of the configs)

Commands:

    python tools/prepare_data/gqa.py --questions questions1.2/train_balanced_questions.json \
        --scene-graphs sceneGraphs/train_sceneGraphs.json --output annotations/GQA_train_balanced.jsonl
    python tools/prepare_data/gqa.py --questions questions1.2/val_balanced_questions.json \
        --scene-graphs sceneGraphs/val_sceneGraphs.json --output annotations/GQA_val_balanced.jsonl
    python tools/prepare_data/gqa.py --questions questions1.2/testdev_balanced_questions.json \
        --output annotations/GQA_testdev_balanced.jsonl

One JSONL line per question holds what every dataset version needs, boxes already in pixel xyxy:

    {"question_id": "07333408", "image_id": "2375429", "img_path": "2375429.jpg", "width": 500, "height": 333,
     "question": "What is on the white wall?", "answer": "pipe", "full_answer": "The pipe is on the wall.",
     "boxes": [[x0, y0, x1, y1], ...],
     "question_boxed": "What is on the white wall <boxes>?", "question_boxes_seq": [[0]],
     "full_answer_boxed": "The pipe <boxes> is on the wall <boxes>.", "full_answer_boxes_seq": [[1], [0]],
     "semantic": [{"operation": "select", "argument": "wall", "dependencies": [], "boxes": [0]}, ...]}

Conventions:
- Scene-graph objects are {x, y, w, h} in pixels; the box is [x, y, x + w, y + h], clamped to the image
  (the number clamped is reported). `boxes` holds each referenced object once, in order of first mention
  (question, then full answer, then program).
- `annotations` keys are word spans of the text split at spaces ("4:6" = words 4 and 5, "2" = word 2);
  `<boxes>` goes after the span's last word, before its trailing punctuation ("wall?" -> "wall <boxes>?").
- A program step's argument loses its object ids ("wall (722332)" -> "wall"); its `boxes` is null when the
  argument names no object, [] for "(-)" (nothing found), else the indices of the named objects.
- Without --scene-graphs (testdev) the box fields (width, height, boxes, *_boxed, *_boxes_seq and the steps'
  `boxes`) are left out; only the versions without boxes can read such a file.
- An object id missing from the scene graph drops that reference (counted and reported); a question whose
  image has no scene graph, or an annotation span outside its text, is an error naming the question id.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import read_json, write_jsonl

BOXES_PLACEHOLDER = '<boxes>'
# Object ids at the end of a program argument: "wall (722332)", "cups (1,2)", "train,near,s (-)".
_IDS = re.compile(r'\s+\((-|\d+(?:,\d+)*)\)\s*$')
_TRAILING_PUNCT = '?.,!;:'


class GQAFormatError(ValueError):
    """The official files hold something this converter cannot interpret."""


def object_box(obj: dict, width: int, height: int) -> tuple[list[float], bool]:
    """Pixel xyxy of a scene-graph object clamped to the image; the flag says whether clamping changed it."""
    x0, y0 = obj['x'], obj['y']
    raw = [x0, y0, x0 + obj['w'], y0 + obj['h']]
    box = [min(max(raw[0], 0), width), min(max(raw[1], 0), height),
           min(max(raw[2], 0), width), min(max(raw[3], 0), height)]
    return [float(v) for v in box], box != raw


class _BoxTable:
    """The boxes of one question: object id -> index in `boxes`, filled in order of first mention."""

    def __init__(self, scene: dict, stats: dict):
        self.scene, self.stats = scene, stats
        self.boxes: list[list[float]] = []
        self.index: dict[str, int] = {}

    def indices(self, ids: list[str]) -> list[int]:
        out = []
        for obj_id in ids:
            if obj_id not in self.index:
                obj = self.scene['objects'].get(obj_id)
                if obj is None:
                    self.stats['missing_objects'] += 1
                    continue
                box, clamped = object_box(obj, self.scene['width'], self.scene['height'])
                self.stats['clamped_boxes'] += clamped
                self.index[obj_id] = len(self.boxes)
                self.boxes.append(box)
            out.append(self.index[obj_id])
        return out


def parse_span(span: str, n_words: int, where: str) -> tuple[int, int]:
    """'4:6' -> (4, 6); '2' -> (2, 3): a half-open range of word indices."""
    try:
        parts = [int(p) for p in span.split(':')]
    except ValueError:
        raise GQAFormatError(f"{where}: annotation span {span!r} is not 'start:end' or 'index'") from None
    start, end = (parts[0], parts[0] + 1) if len(parts) == 1 else parts
    if not 0 <= start < end <= n_words:
        raise GQAFormatError(f"{where}: annotation span {span!r} lies outside the {n_words} words of the text")
    return start, end


def insert_boxes(text: str, spans: dict[str, str], table: _BoxTable, where: str) -> tuple[str, list[list[int]]]:
    """Put `<boxes>` after each annotated word span; returns the text and its boxes_seq (reading order)."""
    words = text.split()
    marks = []
    for span, ids in spans.items():
        start, end = parse_span(span, len(words), where)
        boxes = table.indices(ids.split(','))
        if boxes:
            marks.append((end, start, boxes))
    marks.sort(key=lambda m: (m[0], m[1]))
    boxes_seq = []
    for end, _, boxes in marks:
        word = words[end - 1]
        stem = word.rstrip(_TRAILING_PUNCT)
        words[end - 1] = f"{stem} {BOXES_PLACEHOLDER}{word[len(stem):]}"
        boxes_seq.append(boxes)
    return ' '.join(words), boxes_seq


def split_argument(argument: str) -> tuple[str, list[str] | None]:
    """'wall (722332)' -> ('wall', ['722332']); '_,on,s (-)' -> ('_,on,s', []); 'name' -> ('name', None)."""
    match = _IDS.search(argument)
    if match is None:
        return argument.strip(), None
    ids = match.group(1)
    return argument[:match.start()].strip(), [] if ids == '-' else ids.split(',')


def convert_question(qid: str, q: dict, scene: dict | None, stats: dict) -> dict:
    """One official question (and its image's scene graph, if any) -> one JSONL record."""
    where = f"question {qid}"
    missing = [k for k in ('imageId', 'question', 'answer') if k not in q]
    if missing:
        raise GQAFormatError(f"{where}: missing field(s) {missing}")
    record = {'question_id': qid, 'image_id': q['imageId'], 'img_path': f"{q['imageId']}.jpg"}
    if scene is not None:
        record.update(width=scene['width'], height=scene['height'])
    record.update(question=q['question'], answer=q['answer'], full_answer=q.get('fullAnswer', q['answer']))
    steps = []
    table = _BoxTable(scene, stats) if scene is not None else None
    if table is not None:
        annotations = q.get('annotations') or {}
        question_boxed, question_seq = insert_boxes(q['question'], annotations.get('question') or {}, table, where)
        full_boxed, full_seq = insert_boxes(record['full_answer'], annotations.get('fullAnswer') or {}, table,
                                            where + ' (fullAnswer)')
    for k, step in enumerate(q.get('semantic') or []):
        argument, ids = split_argument(step.get('argument', ''))
        out = {'operation': step['operation'], 'argument': argument, 'dependencies': list(step.get('dependencies', []))}
        if any(not 0 <= d < k for d in out['dependencies']):
            raise GQAFormatError(f"{where}: program step {k} depends on {out['dependencies']}, not on earlier steps")
        if table is not None:
            out['boxes'] = None if ids is None else table.indices(ids)
        steps.append(out)
    if table is not None:
        record.update(boxes=table.boxes, question_boxed=question_boxed, question_boxes_seq=question_seq,
                      full_answer_boxed=full_boxed, full_answer_boxes_seq=full_seq)
    record['semantic'] = steps
    return record


def convert(questions: dict, scene_graphs: dict | None = None, stats: dict | None = None) -> list[dict]:
    """Official questions (dict qid -> question) and optional scene graphs -> records, in file order."""
    stats = stats if stats is not None else {}
    stats.setdefault('missing_objects', 0)
    stats.setdefault('clamped_boxes', 0)
    records = []
    for qid, q in questions.items():
        scene = None
        if scene_graphs is not None:
            scene = scene_graphs.get(q.get('imageId'))
            if scene is None:
                raise GQAFormatError(f"question {qid}: image {q.get('imageId')!r} has no scene graph "
                                     f"(scene graphs of another split?)")
        records.append(convert_question(qid, q, scene, stats))
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--questions', nargs='+', required=True,
                        help='official question JSON file(s), e.g. train_balanced_questions.json')
    parser.add_argument('--scene-graphs', default=None,
                        help='official {split}_sceneGraphs.json of the same split (omit for testdev: no boxes)')
    parser.add_argument('--output', required=True, help='JSONL to write, e.g. annotations/GQA_train_balanced.jsonl')
    args = parser.parse_args(argv)
    questions = {}
    for path in args.questions:
        questions.update(read_json(path, GQAFormatError))
    scene_graphs = read_json(args.scene_graphs, GQAFormatError) if args.scene_graphs else None
    stats: dict = {}
    records = convert(questions, scene_graphs, stats)
    write_jsonl(records, args.output)
    print(f"wrote {len(records)} questions to {args.output} (object references missing from the scene graphs: "
          f"{stats['missing_objects']}, boxes clamped to the image: {stats['clamped_boxes']})", file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
