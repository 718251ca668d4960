"""Visual question answering with short answers: VQAv2 (train/val, scored) and question-only sets.

`VQAv2Dataset` reads the JSONL written by tools/prepare_data/vqav2.py, one question per line:
    {"question_id": 262148000, "image_id": 262148, "image_path": "COCO_val2014_000000262148.jpg",
     "question": "Where is he looking?",
     "annotation": {"question_type": "none of the above", "answer_type": "other",
                    "multiple_choice_answer": "down", "answers": [{"answer": "down", ...}, ... x10]}}
It also reads Shikra's files (same `image_path` / `question` / `annotation` fields; `img_path` is
accepted too) and flat records with `answers` (strings or official answer dicts) and/or `answer`.
The target is the most common of the human answers (ties: the official multiple_choice_answer when
it is among the tied, else the earliest in annotator order), put into `answer_template`.
`meta(i)` gives the metric all raw answers, because VQA accuracy scores against each annotator.

`PureVQADataset` is for prediction only (e.g. VQAv2 test-dev, whose answers are withheld): records
need `image_path` (or `img_path`) and `question`; the gpt turn is the empty string, the metric is
None, and `meta(i)` carries the question_id that tools/vqav2_submission.py needs.
"""
from __future__ import annotations

from collections import Counter

from ..root import ANSWER_PLACEHOLDER, DATASETS, IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset

IMAGE_KEYS = ('image_path', 'img_path')


def answer_strings(answers, where: str) -> list[str]:
    """The raw answer texts of a list of strings or official `{"answer": ..., "answer_id": ...}` dicts."""
    if not isinstance(answers, list):
        raise DataFileError(f"{where}: 'answers' must be a list, got {type(answers).__name__}")
    texts = []
    for k, answer in enumerate(answers):
        text = answer.get('answer') if isinstance(answer, dict) else answer
        if not isinstance(text, str):
            raise DataFileError(f"{where}: answer {k} has no answer text: {answer!r}")
        texts.append(text)
    return texts


def majority_answer(answers: list[str], preferred: str | None = None) -> str:
    """Most common answer; a tie goes to `preferred` when it is among the tied, else to the earliest."""
    counts = Counter(answers)
    top = max(counts.values())
    if preferred is not None and counts.get(preferred) == top:
        return preferred
    return next(a for a in answers if counts[a] == top)


class _QuestionDataset(AnnotationDataset):
    """Shared part: records with an image path and a question, asked through a question template."""

    required_fields = ('question',)
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'VQA.json',
                 seed: int = 0):
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed)
        for record in self.records:
            where = record.get('__source__', filename)
            if not any(k in record for k in IMAGE_KEYS):
                raise DataFileError(f"{where}: missing field 'image_path' (or 'img_path')")
            if not isinstance(record['question'], str) or not record['question'].strip():
                raise DataFileError(f"{where}: 'question' must be a non-empty string")

    def image_key(self, record: dict) -> str:
        return next(k for k in IMAGE_KEYS if k in record)

    def make_item(self, index: int, record: dict, answer: str) -> dict:
        question = self.question(index, {QUESTION_PLACEHOLDER: record['question'].strip()})
        return {
            'image': self.get_image(record, self.image_key(record)),
            'target': {'boxes': [], 'points': []},
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': None, 'points_seq': None},
            ],
        }


@DATASETS.register_module()
class VQAv2Dataset(_QuestionDataset):
    """VQAv2 questions with their ten human answers; the target is the majority answer.

    answer_template: text of the gpt turn with `<answer>` standing for the short answer, e.g.
    'The answer is <answer>.' (the metric extracts the answer from either form).
    """

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'VQA.json',
                 seed: int = 0, answer_template: str = ANSWER_PLACEHOLDER):
        if ANSWER_PLACEHOLDER not in answer_template:
            raise ValueError(f"answer_template {answer_template!r} lacks the placeholder {ANSWER_PLACEHOLDER}")
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed)
        self.answer_template = answer_template
        # Resolved at load so a record without any answer fails before training starts.
        self._answers, self._targets = [], []
        for record in self.records:
            answers, target = self._resolve(record)
            self._answers.append(answers)
            self._targets.append(target)

    @staticmethod
    def _annotation(record: dict) -> dict:
        """The official annotation fields: nested under 'annotation' (converter, Shikra) or flat."""
        annotation = record.get('annotation')
        if annotation is None:
            return record
        if not isinstance(annotation, dict):
            raise DataFileError(f"{record['__source__']}: 'annotation' must be an object")
        return annotation

    def _resolve(self, record: dict) -> tuple[list[str], str]:
        where = record['__source__']
        annotation = self._annotation(record)
        answers = answer_strings(annotation['answers'], where) if 'answers' in annotation else []
        preferred = annotation.get('multiple_choice_answer', annotation.get('answer', record.get('answer')))
        if answers:
            target = majority_answer(answers, preferred)
        elif isinstance(preferred, str):
            target = preferred
        else:
            raise DataFileError(f"{where}: no answer (expected 'annotation.answers', 'answers' or 'answer'); "
                                f"use PureVQADataset for questions without answers")
        if not target.strip():
            raise DataFileError(f"{where}: the answer is empty")
        return answers, target

    def target_answer(self, index: int) -> str:
        return self._targets[index]

    def build_item(self, index: int, record: dict) -> dict:
        answer = self.answer_template.replace(ANSWER_PLACEHOLDER, self._targets[index])
        return self.make_item(index, record, answer)

    def meta(self, index: int) -> dict:
        record = self.records[index]
        annotation = self._annotation(record)
        meta = {'question_id': record.get('question_id'), 'answers': list(self._answers[index])}
        for key in ('answer_type', 'question_type'):
            if key in annotation:
                meta[key] = annotation[key]
        return meta


@DATASETS.register_module()
class PureVQADataset(_QuestionDataset):
    """Questions without answers, for prediction only (metric: None).

    The gpt turn is '' so the item keeps the canonical human/gpt shape; its predictions are turned
    into a server submission by tools/vqav2_submission.py using meta(i)['question_id'].
    """

    def build_item(self, index: int, record: dict) -> dict:
        return self.make_item(index, record, '')

    def meta(self, index: int) -> dict:
        return {'question_id': self.records[index].get('question_id')}
