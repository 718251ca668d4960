"""GPT4Gen: Shikra's GPT-4-generated grounded question answering on Flickr30K images.

Reads Shikra's released JSONL as it is: `GPT4GEN_BoxCoT_{train,test}.jsonl` and the referential-dialogue
`GPT4GEN_RD_BoxCoT_train.jsonl`, one question a line:

    {"img_path": "<flickr30k image>.jpg", "boxes": [[x0, y0, x1, y1], ...] (pixels of the original image),
     "question": "... <ph_st>the dog<ph_ed> ...", "question_boxes_seq": [[0]] (or [] / null),
     "answer": "short answer", "cot_with_ans": "chain of thought ... ending with the answer",
     "answer_boxes_seq": [[0], [1, 2]]}

A phrase marked `<ph_st>...<ph_ed>` is followed by its boxes: the k-th `<ph_ed>` of a text takes the
boxes of group k of its *_boxes_seq. Only the end markers are counted (a stray or missing `<ph_st>`
is dropped, not an error). The question keeps its boxes in every version (BoxCoT questions usually
have none, RD questions point at regions); `version` (Shikra's names) chooses the answer:

  a   the short `answer`
  c   the chain of thought `cot_with_ans`, markers removed, no boxes
  bc  the chain of thought with `<boxes>` after every marked phrase

Records are checked at load (fields, boxes, marker counts, box indices); a bad one raises an error
naming `file:line`.
"""
from __future__ import annotations

import re

from ..root import BOXES_PLACEHOLDER, DATASETS, IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset
from .flickr import PHRASE_END, PHRASE_START, check_boxes, check_boxes_seq

VERSIONS = ('a', 'c', 'bc')
DEFAULT_TEMPLATES = {'a': 'GPT4Gen.json', 'c': 'GPT4Gen_CoT.json', 'bc': 'GPT4Gen_BCoT.json'}
# Whitespace before an end marker is dropped so that "the dog <ph_ed>" and "the dog<ph_ed>" read the same.
_END = re.compile(r'\s*' + re.escape(PHRASE_END))


def mark_boxes(text: str, with_boxes: bool) -> str:
    """`text` without phrase markers; with_boxes puts ' <boxes>' where each phrase ends."""
    return _END.sub(f' {BOXES_PLACEHOLDER}' if with_boxes else '', text.replace(PHRASE_START, ''))


def _check_seq(text: str, seq, field: str, num_boxes: int, where: str) -> list[list[int]]:
    """The groups of `field`, one per end marker of `text` (a missing field is no group)."""
    return check_boxes_seq([] if seq is None else seq, text.count(PHRASE_END), num_boxes, where, field, 'text')


@DATASETS.register_module()
class GPT4GenDataset(AnnotationDataset):
    """Shikra's GPT4Gen (BoxCoT / RD BoxCoT) questions in one of `VERSIONS`; see the module docstring."""

    required_fields = ('img_path', 'boxes', 'question')
    records_in_memory = True  # the box sequences are filled in place at load
    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str, version: str = 'bc', template_file: str | None = None,
                 seed: int = 0):
        if version not in VERSIONS:
            raise ValueError(f"GPT4GenDataset: unknown version {version!r}; valid versions: {', '.join(VERSIONS)}")
        self.version = version
        super().__init__(filename, image_folder, template_file or DEFAULT_TEMPLATES[version], seed=seed)
        answer_field = 'answer' if version == 'a' else 'cot_with_ans'
        for record in self.records:
            where = record['__source__']
            if not isinstance(record.get(answer_field), str):
                raise DataFileError(f"{where}: version {version} needs the text field {answer_field!r}")
            if not isinstance(record['question'], str):
                raise DataFileError(f"{where}: 'question' must be a string")
            check_boxes(record['boxes'], where)
            record['question_boxes_seq'] = _check_seq(record['question'], record.get('question_boxes_seq'),
                                                      'question_boxes_seq', len(record['boxes']), where)
            if version == 'bc':
                record['answer_boxes_seq'] = _check_seq(record['cot_with_ans'], record.get('answer_boxes_seq'),
                                                        'answer_boxes_seq', len(record['boxes']), where)

    def build_item(self, index: int, record: dict) -> dict:
        question = self.question(index, {QUESTION_PLACEHOLDER: mark_boxes(record['question'], with_boxes=True)})
        if self.version == 'a':
            answer, answer_seq = mark_boxes(record['answer'], with_boxes=False), None
        else:
            answer = mark_boxes(record['cot_with_ans'], with_boxes=self.version == 'bc')
            answer_seq = record['answer_boxes_seq'] if self.version == 'bc' else None
        return {
            'image': self.get_image(record),
            'target': {'boxes': [[float(v) for v in box] for box in record['boxes']], 'points': []},
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': record['question_boxes_seq'] or None,
                 'points_seq': None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': answer_seq, 'points_seq': None},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'answer': record.get('answer')}
