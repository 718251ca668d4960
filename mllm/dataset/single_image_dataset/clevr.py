"""CLEVR: synthetic 3D scenes with compositional questions, whose functional programs give reasoning steps.

Reads the JSONL of tools/prepare_data/clevr.py (each program step already executed on the scene).
`version` (Shikra's names):

  q-a   "The answer is 3."
  q-s   the program as readable steps, then the cue: "Find the red cube. Find the spheres left of the red
        cube. Counting them gives 3. The answer is 3."
  q-bs  q-s with a `<points>` group after each object set the steps find (object centres from the
        scene's pixel_coords): "Find the red cube <points>. Find the spheres left of ... <points>. ..."

Object sets that only feed a further filter (or `unique`) are folded into the next description, so each
sentence names a set the question actually uses. Every answer ends with "The answer is X.".
"""
from __future__ import annotations

from ..root import DATASETS, IMAGE_PLACEHOLDER, POINTS_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset
from .gqa import answer_cue, parse_version

VERSIONS = ('q-a', 'q-s', 'q-bs')
DEFAULT_TEMPLATES = {'a': 'CLEVR.json', 's': 'CLEVR_CoT.json', 'bs': 'CLEVR_PCoT.json'}
_RELATIONS = {'left': 'left of', 'right': 'right of', 'front': 'in front of', 'behind': 'behind'}
_ADJECTIVE_ORDER = ('size', 'color', 'material')
_SET_FUNCTIONS = ('scene', 'relate', 'union', 'intersect')


def _yields_set(function: str) -> bool:
    return function in _SET_FUNCTIONS or function.startswith(('filter_', 'same_'))


class _Description:
    """How to name the objects a step yields: adjectives, a shape noun, a trailing clause, or a whole phrase."""

    def __init__(self, adjectives=None, shape=None, tail='', whole=None, lead=''):
        self.adjectives, self.shape, self.tail, self.whole = dict(adjectives or {}), shape, tail, whole
        self.lead = lead  # e.g. 'other' for same_* (which excludes the reference object)

    def refine(self, attribute: str, value: str) -> _Description:
        out = _Description(self.adjectives, self.shape, self.tail, self.whole, self.lead)
        if attribute == 'shape':
            out.shape = value
        else:
            out.adjectives[attribute] = value
        return out

    def phrase(self, plural: bool = True) -> str:
        words = [self.adjectives[a] for a in _ADJECTIVE_ORDER if a in self.adjectives]
        if self.whole is not None:
            extra = ' '.join(words + ([self.shape + 's'] if self.shape else []))
            return self.whole + (f' that are {extra}' if extra else '')
        noun = (self.shape or 'object') + ('s' if plural else '')
        return ' '.join([*([self.lead] if self.lead else []), *words, noun]) + self.tail


def reasoning_steps(program: list[dict], with_points: bool) -> tuple[str, list[list[int]]]:
    """Readable steps of an executed program and the points_seq of its `<points>` (object indices)."""
    consumers: dict[int, list[str]] = {}
    for step in program:
        for i in step['inputs']:
            consumers.setdefault(i, []).append(step['function'])
    descriptions: list[_Description | None] = []
    sentences, points_seq = [], []

    def found(k: int, text: str) -> str:
        objects = program[k]['objects']
        if not objects:
            return f'there are no {text}'
        if with_points:
            points_seq.append(list(objects))
            return f'find the {text} {POINTS_PLACEHOLDER}'
        return f'find the {text}'

    for k, step in enumerate(program):
        function, inputs, values = step['function'], step['inputs'], step.get('value_inputs') or []
        args = [descriptions[i] for i in inputs]
        arg_values = [program[i].get('value') for i in inputs]
        desc, sentence = None, None
        if function == 'scene':
            desc = _Description()
        elif function.startswith('filter_'):
            desc = args[0].refine(function[7:], values[0])
        elif function == 'relate':
            desc = _Description(tail=f" {_RELATIONS.get(values[0], values[0])} the {args[0].phrase(plural=False)}")
        elif function.startswith('same_'):
            desc = _Description(tail=f" with the same {function[5:]} as the {args[0].phrase(plural=False)}",
                                lead='other')
        elif function == 'union':
            desc = _Description(whole=f'{args[0].phrase()} or {args[1].phrase()}')
        elif function == 'intersect':
            desc = _Description(whole=f'{args[0].phrase()} that are also {args[1].phrase()}')
        elif function == 'unique':
            desc = args[0]
            sentence = found(k, desc.phrase(plural=False))
        elif function == 'count':
            sentence = f"counting them gives {step['value']}"
        elif function == 'exist':
            sentence = 'so at least one exists' if step['value'] == 'yes' else 'so none exists'
        elif function.startswith('query_'):
            sentence = f"the {function[6:]} of the {args[0].phrase(plural=False)} is {step['value']}"
        elif function.startswith('equal_') and function != 'equal_integer':
            same = 'the same' if step['value'] == 'yes' else 'different'
            sentence = f"{arg_values[0]} and {arg_values[1]} are {same}"
        elif function == 'equal_integer':
            sentence = f"{arg_values[0]} and {arg_values[1]} are {'equal' if step['value'] == 'yes' else 'not equal'}"
        elif function in ('less_than', 'greater_than'):
            word = 'fewer' if function == 'less_than' else 'more'
            negation = '' if step['value'] == 'yes' else 'not '
            sentence = f"{arg_values[0]} is {negation}{word} than {arg_values[1]}"
        else:
            sentence = f"{function} {' '.join(values)}: {step.get('value', '')}".strip()
        # Name a set only where the question uses it, not where a further filter (or unique) narrows it.
        narrowed = any(c.startswith('filter_') or c == 'unique' for c in consumers.get(k, []))
        if _yields_set(function) and not narrowed:
            sentence = found(k, desc.phrase())
        descriptions.append(desc)
        if sentence:
            sentences.append(sentence[:1].upper() + sentence[1:] + '.')
    return ' '.join(sentences), points_seq


def compact_points(points: list, seq: list[list[int]]) -> tuple[list, list[list[int]]]:
    """Keep only the points `seq` uses, numbered in order of first use."""
    order: dict[int, int] = {}
    remapped = [[order.setdefault(i, len(order)) for i in group] for group in seq]
    kept = [None] * len(order)
    for old, new in order.items():
        kept[new] = [float(v) for v in points[old]]
    return kept, remapped


@DATASETS.register_module()
class CLEVRDataset(AnnotationDataset):
    """CLEVR questions in one of `VERSIONS`; `template_file` defaults to the family of the answer part."""

    required_fields = ('img_path', 'question', 'answer')
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str, version: str = 'q-a', template_file: str | None = None,
                 seed: int = 0):
        self.version = version
        _, self.answer_part = parse_version(version, VERSIONS)
        super().__init__(filename, image_folder, template_file or DEFAULT_TEMPLATES[self.answer_part], seed=seed)
        needed = {'a': [], 's': ['program'], 'bs': ['program', 'points']}[self.answer_part]
        for record in self.records:
            missing = [k for k in needed if k not in record]
            if missing:
                raise DataFileError(f"{record['__source__']}: version {version} needs field(s) {missing}")

    def build_item(self, index: int, record: dict) -> dict:
        cue = answer_cue(record['answer'])
        points, points_seq = [], None
        if self.answer_part == 'a':
            answer = cue
        else:
            try:
                steps, seq = reasoning_steps(record['program'], with_points=self.answer_part == 'bs')
            except (KeyError, IndexError, TypeError) as e:
                raise DataFileError(f"{record['__source__']}: malformed program ({e!r})") from None
            answer = f'{steps} {cue}'
            if seq:
                bad = sorted({i for group in seq for i in group if not 0 <= i < len(record['points'])})
                if bad:
                    raise DataFileError(f"{record['__source__']}: program refers to object(s) {bad} but the record "
                                        f"has {len(record['points'])} points")
                points, points_seq = compact_points(record['points'], seq)
        return {
            'image': self.get_image(record),
            'target': {'boxes': [], 'points': points},
            'conversations': [
                {'from': 'human', 'value': self.question(index, {QUESTION_PLACEHOLDER: record['question']}),
                 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': None, 'points_seq': points_seq},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'question_index': record.get('question_index'), 'answer': record['answer']}
