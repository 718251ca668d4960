"""GQA: compositional questions on Visual Genome images, with optional boxes from the scene graphs.

Reads the JSONL of tools/prepare_data/gqa.py (boxes already pixel xyxy). `version` is
'<question part>-<answer part>' as in Shikra:

  question part  q    the plain question
                 qb   the question with the boxes of the objects it mentions ("... the wall <boxes>?")
                 qbp  qb for a seeded fraction `question_box_prob` of the samples, q for the others
  answer part    a    "The answer is pipe."
                 c    the full-sentence answer, then the cue: "The pipe is on the wall. The answer is pipe."
                 bl   c with the boxes of the objects the sentence mentions
                 bc   chain of thought with boxes: the question's program as readable steps, each object
                      found followed by its boxes, then the cue
                 s    the program in compact notation ("select: wall -> relate: _,on,s -> query: name"), no boxes
                 bs   s with the boxes of the objects each step finds

Every answer ends with "The answer is X." so `extract_answer` recovers the short answer. Versions with
boxes need a file converted with scene graphs (train/val; testdev has none, so its test entries use
q-a references with the template of the trained version, as Shikra did).

Differences from Shikra's letters: Shikra's c/bc came from its own unreleased chain-of-thought file; here c
is the released fullAnswer (Shikra's l, which is therefore not a separate version) and bc is generated from
the released program. A prediction's boxes are not scored: the metric compares the extracted answer only.
"""
from __future__ import annotations

import random

from ..root import BOXES_PLACEHOLDER, DATASETS, IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset

QUESTION_PARTS = ('q', 'qb', 'qbp')
ANSWER_PARTS = ('a', 'c', 'bl', 'bc', 's', 'bs')
VERSIONS = tuple(f'{q}-{a}' for q in QUESTION_PARTS for a in ANSWER_PARTS)
# The template family that asks for each kind of answer.
DEFAULT_TEMPLATES = {'a': 'GQA.json', 'c': 'GQA_full.json', 'bl': 'GQA_full_box.json', 'bc': 'GQA_BCoT.json',
                     's': 'GQA_CoT.json', 'bs': 'GQA_BCoT.json'}
_BOX_FIELDS = ('boxes', 'width', 'height')


def parse_version(version: str, valid=VERSIONS) -> tuple[str, str]:
    if version not in valid:
        raise ValueError(f"unknown version {version!r}; valid versions: {', '.join(valid)}")
    question_part, answer_part = version.split('-')
    return question_part, answer_part


def answer_cue(answer: str) -> str:
    return f"The answer is {answer}."


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ('' if text.endswith(('.', '?', '!')) else '.')


def _box_suffix(boxes, with_boxes: bool) -> str:
    """' <boxes>' after an object that was found, ': there is none' when the step found nothing."""
    if boxes is None or not with_boxes:
        return ''
    return f' {BOXES_PLACEHOLDER}' if boxes else ': there is none'


_ATTRIBUTE_WORDS = {'hposition': 'horizontal position', 'vposition': 'vertical position'}


def _describe_step(step: dict, nouns: list, plurals: list, with_boxes: bool) -> tuple[str, str | None]:
    """One program step as an English sentence (and the noun its result can be called by later steps)."""
    op = step['operation']
    head, _, attr = op.partition(' ')
    arg = step['argument']
    deps = [nouns[d] or 'object' for d in step['dependencies']]
    dep = deps[0] if deps else 'object'
    be = 'are' if step['dependencies'] and plurals[step['dependencies'][0]] else 'is'
    found = _box_suffix(step.get('boxes'), with_boxes)
    parts = [p.strip() for p in arg.split(',')]
    if head == 'select':
        if arg == 'scene':
            return 'look at the whole scene', 'scene'
        return f'find the {arg}{found}', arg
    if head == 'relate' and len(parts) == 3:
        name = 'object' if parts[0] in ('', '_') else parts[0]
        if parts[2] == 'o':
            return f'find the {name} that the {dep} is {parts[1]}{found}', name
        return f'find the {name} that is {parts[1]} the {dep}{found}', name
    if head == 'filter':
        if arg.startswith('not(') and arg.endswith(')'):
            return f'keep the {dep} that {be} not {arg[4:-1]}', dep
        return f'keep the {dep} that {be} {arg}', dep if dep == 'scene' else f'{arg} {dep}'
    if head == 'exist':
        return f'check whether there is such a {dep}', None
    if head == 'verify':
        if attr == 'rel' and len(parts) == 3:
            if parts[2] == 'o':
                return f'check whether the {dep} {be} {parts[1]} a {parts[0]}{found}', None
            return f'check whether a {parts[0]} is {parts[1]} the {dep}{found}', None
        return f'check whether the {dep} {be} {arg}', None
    if head == 'query':
        if arg == 'name':
            return f'identify the {dep}', None
        return f'determine the {_ATTRIBUTE_WORDS.get(arg, arg)} of the {dep}', None
    if head == 'choose':
        if attr == 'rel' and len(parts) == 3 and '|' in parts[1]:
            first, second = parts[1].split('|', 1)
            if parts[2] == 'o':
                return f'decide whether the {dep} is {first} or {second} the {parts[0]}{found}', None
            return f'decide whether the {parts[0]} is {first} or {second} the {dep}{found}', None
        if '|' in arg:
            first, second = arg.split('|', 1)
            return f'decide whether the {dep} is {first} or {second}', None
        if len(deps) == 2:
            return f'decide which is {attr or arg}: the {deps[0]} or the {deps[1]}', None
    if head in ('and', 'or'):
        return ('check that both of these hold' if head == 'and' else 'check whether either of these holds'), None
    if head in ('same', 'different'):
        what = _ATTRIBUTE_WORDS.get(attr or arg, attr or arg or 'type')
        relation = 'the same' if head == 'same' else 'a different'
        if len(deps) == 2:
            return f'check whether the {deps[0]} and the {deps[1]} have {relation} {what}', None
        return f'check whether all the {dep} have {relation} {what}', None
    if head == 'common':
        return f'find what the {deps[0]} and the {deps[-1]} have in common', None
    return f'{op}: {arg}{found}', None


def reasoning_steps(steps: list[dict], with_boxes: bool) -> str:
    """The program as readable sentences; `<boxes>` after each object found (in step order) if with_boxes."""
    nouns: list = []
    plurals: list[bool] = []  # several objects found (from the boxes; filters keep their input's number)
    sentences = []
    for step in steps:
        text, noun = _describe_step(step, nouns, plurals, with_boxes)
        nouns.append(noun)
        deps = step['dependencies']
        if step.get('boxes') is not None:
            plurals.append(len(step['boxes']) > 1)
        else:
            plurals.append(step['operation'].startswith('filter') and bool(deps) and plurals[deps[0]])
        sentences.append(_sentence(text))
    return ' '.join(sentences)


def compact_program(steps: list[dict], with_boxes: bool) -> str:
    """'select: wall <boxes> -> filter color: white -> ...'; dependencies shown where not the previous step."""
    pieces = []
    for k, step in enumerate(steps):
        # "exist: ?" carries no argument worth writing.
        piece = step['operation'] if step['argument'] in ('', '?') else f"{step['operation']}: {step['argument']}"
        if step['dependencies'] and step['dependencies'] != [k - 1]:
            piece += f" [{','.join(str(d) for d in step['dependencies'])}]"
        if with_boxes and step.get('boxes') is not None:
            piece += f' {BOXES_PLACEHOLDER}' if step['boxes'] else ' (none)'
        pieces.append(piece)
    return ' -> '.join(pieces)


def step_boxes_seq(steps: list[dict]) -> list[list[int]]:
    """The boxes_seq matching the `<boxes>` that `reasoning_steps`/`compact_program` write (non-empty only)."""
    return [list(step['boxes']) for step in steps if step.get('boxes')]


def compact_boxes(boxes: list, seqs: list[list[list[int]] | None]) -> tuple[list, list]:
    """Keep only the boxes the turns use, numbered in order of first use; returns (boxes, remapped seqs)."""
    order: dict[int, int] = {}
    remapped = []
    for seq in seqs:
        if seq is None:
            remapped.append(None)
            continue
        remapped.append([[order.setdefault(i, len(order)) for i in group] for group in seq])
    kept = [None] * len(order)
    for old, new in order.items():
        kept[new] = [float(v) for v in boxes[old]]
    return kept, remapped


@DATASETS.register_module()
class GQADataset(AnnotationDataset):
    """GQA questions in one of the `VERSIONS`; `template_file` defaults to the family of the answer part."""

    required_fields = ('img_path', 'question', 'answer')
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str, version: str = 'q-a', template_file: str | None = None,
                 seed: int = 0, question_box_prob: float = 0.5):
        self.version = version
        self.question_part, self.answer_part = parse_version(version)
        if not 0.0 <= question_box_prob <= 1.0:
            raise ValueError(f"question_box_prob must lie in [0, 1], got {question_box_prob}")
        self.question_box_prob = question_box_prob
        super().__init__(filename, image_folder, template_file or DEFAULT_TEMPLATES[self.answer_part], seed=seed)
        needed = self.version_fields()
        for record in self.records:
            missing = [k for k in needed if k not in record]
            if missing:
                hint = (' (the file was converted without --scene-graphs; use a version without boxes)'
                        if any(k in _BOX_FIELDS for k in missing) else '')
                raise DataFileError(f"{record['__source__']}: version {version} needs field(s) {missing}{hint}")

    def version_fields(self) -> list[str]:
        needed = []
        if self.question_part in ('qb', 'qbp'):
            needed += ['boxes', 'question_boxed', 'question_boxes_seq']
        needed += {'a': [], 'c': ['full_answer'], 'bl': ['boxes', 'full_answer_boxed', 'full_answer_boxes_seq'],
                   'bc': ['boxes', 'semantic'], 's': ['semantic'], 'bs': ['boxes', 'semantic']}[self.answer_part]
        if 'boxes' in needed:
            needed += ['width', 'height']
        return list(dict.fromkeys(needed))

    def boxed_question(self, index: int) -> bool:
        if self.question_part == 'qbp':
            # Seeded per sample: the same index gets the same choice in every epoch and worker.
            return random.Random(f'gqa-qbp:{self.seed}:{index}').random() < self.question_box_prob
        return self.question_part == 'qb'

    def answer_turn(self, record: dict) -> tuple[str, list | None]:
        part, cue = self.answer_part, answer_cue(record['answer'])
        if part == 'a':
            return cue, None
        if part == 'c':
            return f"{_sentence(record['full_answer'])} {cue}", None
        if part == 'bl':
            return f"{_sentence(record['full_answer_boxed'])} {cue}", record['full_answer_boxes_seq']
        steps = record['semantic']
        if part in ('s', 'bs'):
            text = compact_program(steps, with_boxes=part == 'bs')
            return f"{text}. {cue}", step_boxes_seq(steps) if part == 'bs' else None
        return f"{reasoning_steps(steps, with_boxes=True)} {cue}", step_boxes_seq(steps)

    def build_item(self, index: int, record: dict) -> dict:
        if self.boxed_question(index):
            question, question_seq = record['question_boxed'], record['question_boxes_seq']
        else:
            question, question_seq = record['question'], None
        answer, answer_seq = self.answer_turn(record)
        n_boxes = len(record.get('boxes') or [])
        bad = sorted({i for seq in (question_seq, answer_seq) for group in seq or [] for i in group
                      if not (isinstance(i, int) and 0 <= i < n_boxes)}, key=str)
        if bad:
            raise DataFileError(f"{record['__source__']}: refers to box(es) {bad} but the record has {n_boxes} boxes")
        boxes, (question_seq, answer_seq) = compact_boxes(record.get('boxes') or [], [question_seq, answer_seq])
        image = self.get_image(record)
        if 'width' in record and image.size != (record['width'], record['height']):
            raise DataFileError(f"{record['__source__']}: image {record['img_path']} is {image.size[0]}x"
                                f"{image.size[1]} but the scene graph says {record['width']}x{record['height']}")
        return {
            'image': image,
            'target': {'boxes': boxes, 'points': []},
            'conversations': [
                {'from': 'human', 'value': self.question(index, {QUESTION_PLACEHOLDER: question}),
                 'boxes_seq': question_seq or None, 'points_seq': None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': answer_seq or None, 'points_seq': None},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'question_id': record.get('question_id'), 'answer': record['answer']}
