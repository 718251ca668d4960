"""CLEVR: synthetic 3D scenes with compositional questions, whose functional programs give reasoning steps.

Two layouts:
  * the JSONL of tools/prepare_data/clevr.py (each program step already executed on the scene, `points`
    in the record);
  * Shikra's `CLEVR_{train,val}_questions_with_ans.jsonl` with `scene_graph_file` = its
    `CLEVR_{train,val}_scenes.jsonl`: each line an official question ({image_index, image_filename,
    question, answer, program}) whose program steps carry their result in `ans` (the object indices of
    a step that yields objects, else the value), and the scenes file one official scene a line, line k+1
    holding the scene of image_index k (how Shikra joins them). The object centres are the scene's
    `pixel_coords[:2]`. Read at load into the first layout; a bad line raises an error naming `file:line`.
Points are clamped to the image (some CLEVR centres lie a pixel or two outside it).

`version` (Shikra's names):

  q-a   "The answer is 3."
  q-s   the program as readable steps, then the cue: "Find the red cube. Find the objects right of the red
        cube. Find the spheres right of the red cube. Counting them gives 1. The answer is 1."
  q-bs  q-s with a `<points>` group after each object set the steps find (object centres from the
        scene's pixel_coords): "Find the red cube <points>. Find the objects right of ... <points>. ..."

Every step that relates objects (`relate`, `same_*`, `union`, `intersect`) and every `unique` names its
result, as Shikra's step-by-step chains do, even where a later filter narrows it. Consecutive filters
(from `scene` on) are folded into one description, named where no further filter or `unique` narrows them,
so "Find the small blue sphere" is one sentence, not three. Every answer ends with "The answer is X.".
"""
from __future__ import annotations

import json

from ..root import DATASETS, IMAGE_PLACEHOLDER, POINTS_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError, read_jsonl
from .base import AnnotationDataset, check_path
from .gqa import answer_cue, parse_version

VERSIONS = ('q-a', 'q-s', 'q-bs')
DEFAULT_TEMPLATES = {'a': 'CLEVR.json', 's': 'CLEVR_CoT.json', 'bs': 'CLEVR_PCoT.json'}
_RELATIONS = {'left': 'left of', 'right': 'right of', 'front': 'in front of', 'behind': 'behind'}
_ADJECTIVE_ORDER = ('size', 'color', 'material')
_SET_FUNCTIONS = ('scene', 'relate', 'union', 'intersect')
_RELATING_FUNCTIONS = ('relate', 'union', 'intersect')


def _yields_set(function: str) -> bool:
    return function in _SET_FUNCTIONS or function.startswith(('filter_', 'same_'))


def _relates(function: str) -> bool:
    return function in _RELATING_FUNCTIONS or function.startswith('same_')


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
        # A relating step always shows what it found (a later filter still narrows a set the question
        # asked about); a scene/filter set is named only where no further filter (or unique) refines it.
        narrowed = any(c.startswith('filter_') or c == 'unique' for c in consumers.get(k, []))
        if _yields_set(function) and (_relates(function) or not narrowed):
            sentence = found(k, desc.phrase())
        descriptions.append(desc)
        if sentence:
            sentences.append(sentence[:1].upper() + sentence[1:] + '.')
    return ' '.join(sentences), points_seq


def _step_result_text(value) -> str:
    return ('yes' if value else 'no') if isinstance(value, bool) else str(value)


def shikra_program(program, source: str) -> list[dict]:
    """Shikra's executed program (each step's result in `ans`) in the converter's layout (`objects` / `value`)."""
    if not isinstance(program, list) or not program:
        raise DataFileError(f"{source}: 'program' must be a non-empty list of steps")
    steps = []
    for k, node in enumerate(program):
        if not isinstance(node, dict) or 'function' not in node or 'ans' not in node:
            raise DataFileError(f"{source}: program step {k} needs 'function' and its result 'ans' "
                                f"(a *_questions_with_ans.jsonl file), got {node!r}")
        function, ans = node['function'], node['ans']
        step = {'function': function, 'inputs': list(node.get('inputs') or []),
                'value_inputs': list(node.get('value_inputs') or [])}
        if _yields_set(function) or function == 'unique':
            objects = ans if isinstance(ans, list) else [ans]  # unique may store its one index bare
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in objects):
                raise DataFileError(f"{source}: program step {k} ({function}) should yield object indices, "
                                    f"got ans={ans!r}")
            step['objects'] = objects
        else:
            step['value'] = _step_result_text(ans)
        steps.append(step)
    return steps


def read_scene_points(path: str) -> list[tuple[str | None, list[list[float]]]]:
    """(image_filename, object centres [x, y]) of every line of a scenes JSONL, in line order."""
    scenes = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                scene = json.loads(line)
                points = [[float(v) for v in obj['pixel_coords'][:2]] for obj in scene['objects']]
            except json.JSONDecodeError as e:
                raise DataFileError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            except (KeyError, TypeError, ValueError) as e:
                raise DataFileError(f"{where}: expected a CLEVR scene with objects[].pixel_coords ({e!r})") from None
            scenes.append((scene.get('image_filename'), points))
    return scenes


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
                 scene_graph_file: str | None = None, seed: int = 0):
        self.version = version
        _, self.answer_part = parse_version(version, VERSIONS)
        check_path(scene_graph_file, 'scene_graph_file', 'file')
        self.scene_graph_file = scene_graph_file
        super().__init__(filename, image_folder, template_file or DEFAULT_TEMPLATES[self.answer_part], seed=seed)
        needed = {'a': [], 's': ['program'], 'bs': ['program', 'points']}[self.answer_part]
        for record in self.records:
            missing = [k for k in needed if k not in record]
            if missing:
                raise DataFileError(f"{record['__source__']}: version {version} needs field(s) {missing}")

    def load_records(self, filename: str) -> list[dict]:
        lines = read_jsonl(filename)
        if self.scene_graph_file is None:
            shikra = [r['__source__'] for r in lines if 'image_filename' in r and 'img_path' not in r]
            if shikra:
                raise DataFileError(f"{shikra[0]}: a question of Shikra's *_questions_with_ans.jsonl; set "
                                    f"scene_graph_file to its CLEVR_*_scenes.jsonl")
            return lines
        scenes = read_scene_points(self.scene_graph_file)
        return [self._from_shikra(q, scenes) for q in lines]

    def _from_shikra(self, question: dict, scenes: list) -> dict:
        source = question['__source__']
        missing = [k for k in ('image_index', 'image_filename', 'question', 'answer') if k not in question]
        if missing:
            raise DataFileError(f"{source}: missing field(s) {missing}")
        index = question['image_index']
        if not isinstance(index, int) or not 0 <= index < len(scenes):
            raise DataFileError(f"{source}: image_index {index!r} has no line in {self.scene_graph_file} "
                                f"({len(scenes)} scenes)")
        scene_image, points = scenes[index]
        if scene_image is not None and scene_image != question['image_filename']:
            raise DataFileError(f"{source}: image_index {index} is line {index + 1} of {self.scene_graph_file}, "
                                f"the scene of {scene_image}, not of {question['image_filename']}")
        record = {'question_index': question.get('question_index'), 'image_index': index,
                  'img_path': question['image_filename'], 'question': question['question'],
                  'answer': _step_result_text(question['answer']), 'points': points, '__source__': source}
        if self.answer_part != 'a':  # q-a needs no program; its steps' results are not read
            record['program'] = shikra_program(question.get('program'), source)
            last = record['program'][-1].get('value')
            if last != record['answer']:
                raise DataFileError(f"{source}: the program's last step gives {last!r} but the answer is "
                                    f"{record['answer']!r}")
        return record

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
        image = self.get_image(record)
        width, height = image.size
        points = [[min(max(x, 0.0), width), min(max(y, 0.0), height)] for x, y in points]
        return {
            'image': image,
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
