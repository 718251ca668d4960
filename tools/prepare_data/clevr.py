"""Convert the official CLEVR v1.0 release to the JSONL read by `CLEVRDataset`, executing each program.

Official files (https://cs.stanford.edu/people/jcjohns/clevr/, archive CLEVR_v1.0.zip):

    CLEVR_v1.0/questions/CLEVR_{train,val}_questions.json  {"info": ..., "questions": [{image_index,
        image_filename, question, answer, program: [{inputs, function, value_inputs}], question_family_index}]}
    CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json        {"info": ..., "scenes": [{image_index, image_filename,
        objects: [{color, size, shape, material, 3d_coords, pixel_coords, rotation}], relationships, directions}]}
    CLEVR_v1.0/images/{train,val}/CLEVR_{split}_NNNNNN.png (480x320; the {clevr}/images/<split> folders)

The test split has neither answers, programs nor scenes, so only train and val can be converted:

    python tools/prepare_data/clevr.py --questions CLEVR_v1.0/questions/CLEVR_train_questions.json \
        --scenes CLEVR_v1.0/scenes/CLEVR_train_scenes.json --output annotations/CLEVR_train.jsonl
    (the same with val -> annotations/CLEVR_val.jsonl)

One JSONL line per question:

    {"question_index": 0, "image_index": 0, "img_path": "CLEVR_train_000000.png", "question": "...",
     "answer": "yes", "question_family_index": 39, "points": [[x, y], ...],
     "program": [{"function": "scene", "inputs": [], "value_inputs": [], "objects": [0, 1, 2]},
                 {"function": "filter_color", "inputs": [0], "value_inputs": ["red"], "objects": [1]},
                 {"function": "unique", "inputs": [1], "value_inputs": [], "objects": [1]},
                 {"function": "query_shape", "inputs": [2], "value_inputs": [], "value": "cube"}]}

- `points` are the scene's objects in scene order, `pixel_coords[:2]` (x, y in pixels; the depth is dropped),
  clamped to the image (--image-size, 480x320 for CLEVR v1.0).
- Each program step is executed on the scene (the semantics of the CLEVR generator's question engine):
  steps that yield objects store `objects` (indices into `points`; `unique` yields one), the others store
  `value` as text ("3", "yes", "red"). The last value must equal the official answer, else it is an error
  naming the question; so is a `unique` over a set that is not of size one, or an unknown function.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import read_json, write_jsonl

IMAGE_SIZE = (480, 320)
# relationships[rel][i] lists the objects that are `rel` of object i (CLEVR's render_images.py).
_ATTRIBUTES = ('color', 'shape', 'material', 'size')


class CLEVRFormatError(ValueError):
    """The official files hold something this converter cannot interpret."""


def _text(value) -> str:
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def _run_step(function: str, args: list, values: list, scene: dict):
    """Output of one step: a list of object indices, an object index (unique), or a number/bool/str."""
    objects = scene['objects']
    if function == 'scene':
        return list(range(len(objects)))
    if function.startswith('filter_') and function[7:] in _ATTRIBUTES:
        return [i for i in args[0] if objects[i][function[7:]] == values[0]]
    if function == 'unique':
        if len(args[0]) != 1:
            raise CLEVRFormatError(f"unique over {len(args[0])} objects {args[0]}")
        return args[0][0]
    if function == 'relate':
        return list(scene['relationships'][values[0]][args[0]])
    if function == 'union':
        return sorted(set(args[0]) | set(args[1]))
    if function == 'intersect':
        return sorted(set(args[0]) & set(args[1]))
    if function == 'count':
        return len(args[0])
    if function == 'exist':
        return len(args[0]) > 0
    if function.startswith('query_') and function[6:] in _ATTRIBUTES:
        return objects[args[0]][function[6:]]
    if function.startswith('same_') and function[5:] in _ATTRIBUTES:
        attr, i = function[5:], args[0]
        return [j for j, obj in enumerate(objects) if j != i and obj[attr] == objects[i][attr]]
    if function.startswith('equal_'):
        return args[0] == args[1]
    if function == 'less_than':
        return args[0] < args[1]
    if function == 'greater_than':
        return args[0] > args[1]
    raise CLEVRFormatError(f"unknown program function {function!r}")


def execute(program: list[dict], scene: dict) -> list[dict]:
    """The program with each step's result: `objects` (list of indices) or `value` (text)."""
    outputs, steps = [], []
    for k, node in enumerate(program):
        function = node.get('function', node.get('type'))
        inputs = list(node.get('inputs', []))
        values = list(node.get('value_inputs', node.get('side_inputs', [])))
        if any(not 0 <= i < k for i in inputs):
            raise CLEVRFormatError(f"step {k} ({function}) takes inputs {inputs}, not earlier steps")
        try:
            out = _run_step(function, [outputs[i] for i in inputs], values, scene)
        except CLEVRFormatError as e:
            raise CLEVRFormatError(f"step {k}: {e}") from None
        except (KeyError, IndexError, TypeError) as e:
            raise CLEVRFormatError(f"step {k} ({function} {values}) cannot run on the scene: {e!r}") from None
        outputs.append(out)
        step = {'function': function, 'inputs': inputs, 'value_inputs': values}
        if isinstance(out, list):
            step['objects'] = out
        elif function == 'unique':
            step['objects'] = [out]
        else:
            step['value'] = _text(out)
        steps.append(step)
    return steps


def scene_points(scene: dict, image_size=IMAGE_SIZE) -> tuple[list[list[float]], int]:
    """[x, y] of every object (pixel_coords without depth), clamped to the image; and how many were clamped."""
    width, height = image_size
    points, clamped = [], 0
    for obj in scene['objects']:
        x, y = obj['pixel_coords'][:2]
        point = [float(min(max(x, 0), width)), float(min(max(y, 0), height))]
        clamped += point != [x, y]
        points.append(point)
    return points, clamped


def convert(questions: dict, scenes: dict, image_size=IMAGE_SIZE, stats: dict | None = None) -> list[dict]:
    """Official questions + scenes JSON (as loaded) -> records, in question order."""
    stats = stats if stats is not None else {}
    stats.setdefault('clamped_points', 0)
    by_file = {scene['image_filename']: scene for scene in scenes['scenes']}
    points_cache: dict[str, list] = {}
    records = []
    for n, q in enumerate(questions['questions']):
        where = f"question {q.get('question_index', n)} ({q.get('image_filename')})"
        missing = [k for k in ('image_filename', 'question', 'answer', 'program') if k not in q]
        if missing:
            raise CLEVRFormatError(f"{where}: missing field(s) {missing} (the test split has no answers or programs)")
        scene = by_file.get(q['image_filename'])
        if scene is None:
            raise CLEVRFormatError(f"{where}: no scene for this image (scenes of another split?)")
        try:
            program = execute(q['program'], scene)
        except CLEVRFormatError as e:
            raise CLEVRFormatError(f"{where}: {e}") from None
        if program and program[-1].get('value') != _text(q['answer']):
            raise CLEVRFormatError(f"{where}: the program yields {program[-1].get('value')!r} but the answer "
                                   f"is {q['answer']!r}")
        if q['image_filename'] not in points_cache:
            points, clamped = scene_points(scene, image_size)
            stats['clamped_points'] += clamped
            points_cache[q['image_filename']] = points
        records.append({
            'question_index': q.get('question_index', n), 'image_index': q.get('image_index'),
            'img_path': q['image_filename'], 'question': q['question'], 'answer': _text(q['answer']),
            'question_family_index': q.get('question_family_index'),
            'points': points_cache[q['image_filename']], 'program': program,
        })
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--questions', required=True, help='CLEVR_v1.0/questions/CLEVR_{train,val}_questions.json')
    parser.add_argument('--scenes', required=True, help='CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json')
    parser.add_argument('--output', required=True, help='JSONL to write, e.g. annotations/CLEVR_train.jsonl')
    parser.add_argument('--image-size', type=int, nargs=2, default=list(IMAGE_SIZE), metavar=('W', 'H'),
                        help='image size the points are clamped to (default: 480 320)')
    args = parser.parse_args(argv)
    stats: dict = {}
    questions, scenes = read_json(args.questions, CLEVRFormatError), read_json(args.scenes, CLEVRFormatError)
    records = convert(questions, scenes, tuple(args.image_size), stats)
    write_jsonl(records, args.output)
    print(f"wrote {len(records)} questions to {args.output} (points clamped to the image: "
          f"{stats['clamped_points']})", file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
