"""ScienceQA (lupantech/ScienceQA): multiple-choice science questions, image questions only.

Reads the official release directly: `problems.json` maps a problem id to
`{question, choices: [...], answer: <index>, hint, image: 'image.png' | null, split, lecture,
solution, subject, grade, ...}` and the images lie under `{image_folder}/{split}/{pid}/image.png`.
Problems without an image are dropped (this is a vision-language dataset); `split` picks the
problems whose own `split` field matches, or, with `pid_splits` (the official pid_splits.json),
the ids listed under that key (which also allows 'minival', 'minitrain', ...), in that order.

The question shows the context (hint) and the lettered options "(A) ... (B) ..."; the answer is
"The answer is B." and, with `version='solution'` (or 'lecture_solution'), the official
explanation comes first so the model reasons before it answers (the metric reads the letter
after the last "The answer is").
"""
from __future__ import annotations

import os
import string

from ..root import DATASETS, IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError, read_json
from .base import AnnotationDataset, check_path

OPTION_LETTERS = string.ascii_uppercase
VERSIONS = ('answer', 'solution', 'lecture_solution')
_PROBLEM_FIELDS = ('question', 'choices', 'answer', 'image', 'split')


def format_question(problem: dict) -> str:
    """Question, then its context when the problem has one, then the lettered options on one line."""
    lines = [problem['question'].strip()]
    hint = (problem.get('hint') or '').strip()
    if hint:
        lines.append(f"Context: {hint}")
    options = ' '.join(f"({OPTION_LETTERS[k]}) {choice}" for k, choice in enumerate(problem['choices']))
    lines.append(f"Options: {options}")
    return '\n'.join(lines)


def format_answer(problem: dict, version: str = 'answer') -> str:
    letter = OPTION_LETTERS[problem['answer']]
    parts = []
    if version == 'lecture_solution':
        parts.append((problem.get('lecture') or '').strip())
    if version in ('solution', 'lecture_solution'):
        parts.append((problem.get('solution') or '').strip())
    parts.append(f"The answer is {letter}.")
    return '\n'.join(p for p in parts if p)


@DATASETS.register_module()
class ScienceQADataset(AnnotationDataset):
    """Image questions of one ScienceQA split, read from the official problems.json.

    filename:      the official problems.json
    image_folder:  the folder holding train/ val/ test/ (the release's `images` folder)
    split:         'train' | 'val' | 'test' (or any key of pid_splits.json when `pid_splits` is given)
    version:       'answer' -> "The answer is B."; 'solution' / 'lecture_solution' -> explanation first
    """

    required_fields = ('question', 'choices', 'answer', 'img_path')
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str, split: str = 'test', version: str = 'answer',
                 template_file: str = 'ScienceQA.json', pid_splits: str | None = None, seed: int = 0):
        if version not in VERSIONS:
            raise ValueError(f"ScienceQADataset: unknown version {version!r}; choose one of {list(VERSIONS)}")
        self.split, self.version, self.pid_splits = split, version, pid_splits
        check_path(pid_splits, 'pid_splits', 'file')  # read inside load_records: check it first
        super().__init__(filename, image_folder, template_file=template_file, seed=seed)

    def load_records(self, filename: str) -> list[dict]:
        problems = read_json(filename)
        if not isinstance(problems, dict):
            raise DataFileError(f"{filename}: expected the official problems.json (an object keyed by problem id)")
        if self.pid_splits is not None:
            splits = read_json(self.pid_splits)
            if self.split not in splits:
                raise ValueError(f"{self.pid_splits}: no split {self.split!r}; it has {sorted(splits)}")
            pids = [str(pid) for pid in splits[self.split]]
            unknown = [pid for pid in pids if pid not in problems]
            if unknown:
                raise DataFileError(f"{self.pid_splits}: split {self.split!r} lists ids missing from {filename}: "
                                    f"{unknown[:5]}")
        else:
            valid = sorted({p.get('split') for p in problems.values() if isinstance(p, dict) and p.get('split')})
            if self.split not in valid:
                raise ValueError(f"ScienceQADataset: split {self.split!r} not found in {filename}; it has {valid} "
                                 f"(other splits such as 'minival' need pid_splits=<pid_splits.json>)")
            pids = [pid for pid, p in problems.items() if isinstance(p, dict) and p.get('split') == self.split]
        records = []
        for pid in pids:
            problem, source = problems[pid], f"{filename}:pid={pid}"
            if not isinstance(problem, dict):
                raise DataFileError(f"{source}: expected an object, got {type(problem).__name__}")
            missing = [k for k in _PROBLEM_FIELDS if k not in problem]
            if missing:
                raise DataFileError(f"{source}: missing field(s) {missing}")
            if not problem['image']:
                continue  # text-only question
            choices, answer = problem['choices'], problem['answer']
            if not isinstance(choices, list) or not 2 <= len(choices) <= len(OPTION_LETTERS):
                raise DataFileError(f"{source}: 'choices' must be a list of 2 to 26 options, got {choices!r}")
            if not isinstance(answer, int) or not 0 <= answer < len(choices):
                raise DataFileError(f"{source}: answer index {answer!r} is not one of the {len(choices)} choices")
            img_path = os.path.join(problem['split'], pid, problem['image'])
            records.append(dict(problem, pid=pid, img_path=img_path, __source__=source))
        return records

    def build_item(self, index: int, record: dict) -> dict:
        question = self.question(index, {QUESTION_PLACEHOLDER: format_question(record)})
        return {
            'image': self.get_image(record),
            'target': {'boxes': [], 'points': []},
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': format_answer(record, self.version), 'boxes_seq': None,
                 'points_seq': None},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'pid': record['pid'], 'answer': OPTION_LETTERS[record['answer']],
                'num_choices': len(record['choices']), 'choices': list(record['choices'])}
