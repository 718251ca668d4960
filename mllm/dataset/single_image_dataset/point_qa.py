"""Questions about a region given as a box or a point: PointQA Local / LookTwice and Visual7W pointing.

PointQA (Mani et al., "Point and Ask") records, as in Shikra's converted files
pointQA_local_{train,val,test}.jsonl and pointQA_twice_{train,val,test}.jsonl:
    {"file_path": "VG_100K/2345.jpg", "question": "What color is this?", "answer": "red",
     "bbox": [x0, y0, x1, y1], "point": [x, y]}                        # pixels of the original image
LookTwice records carry the three phrasings of their question instead of (or besides) `question`:
"obj_question" (names the object), "super_question" (names its super-category) and
"general_question" (names neither). `point` defaults to the box centre when absent.

Visual7W pointing records, as written by tools/prepare_data/visual7w.py:
    {"img_path": "v7w_2.jpg", "question": "Which ...?", "candidates": [[x0, y0, x1, y1], ...],
     "answer_index": 2, "width": 500, "height": 375, "qa_id": 8, ...}
Shikra's v7w_pointing_*.jsonl (`file_path`, `candidates`, `answer` = the answer box, `point` = the
answer as a point, used instead of the box centre when present) is read too.

`version` says how the referred region (PointQA) or the candidates (V7W) are written into the question:
  'box'   as boxes `<boxes>`;
  'point' as points `<points>` (the record's point for PointQA, the box centre for V7W candidates);
  'both'  both kinds appear in the dataset: each sample uses a box or a point, chosen per index by a
          seeded RNG with P(point) = `point_prob` (Shikra's 'bp' training variant).
For V7W the answer is the right candidate, written in the candidates' format unless `answer_format`
('box' / 'point') says otherwise; then the question ends with a sentence asking for that format.
"""
from __future__ import annotations

import os
import random

from PIL import Image

from ..root import (
    ANSWER_PLACEHOLDER,
    BOXES_PLACEHOLDER,
    DATASETS,
    IMAGE_PLACEHOLDER,
    POINTS_PLACEHOLDER,
    QUESTION_PLACEHOLDER,
)
from ..utils.io import DataFileError
from ..utils.transform import norm_box_xyxy
from .base import AnnotationDataset

REGION_PLACEHOLDER = '<region>'
CANDIDATES_PLACEHOLDER = '<candidates>'

VERSIONS = ('box', 'point', 'both')
TWICE_QUESTION_FIELDS = {'object': 'obj_question', 'super': 'super_question', 'general': 'general_question'}
META_SPACES = ('square', 'image')
IMAGE_KEYS = ('img_path', 'file_path', 'image_path')
# Appended to a V7W question when the answer format differs from the candidates' format.
ANSWER_FORMAT_HINTS = {'box': ' Give the answer as a box.', 'point': ' Give the answer as a point.'}


def check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")


def box_centre(box) -> list[float]:
    x0, y0, x1, y1 = box
    return [(x0 + x1) / 2, (y0 + y1) / 2]


def normalise_box(box, width: int, height: int, space: str = 'square') -> list[float]:
    """Pixel xyxy of the original image -> the normalised coordinates the model's text uses.

    'square': after `Expand2square` (centred padding to side max(w, h), same integer offsets), divided
    by the side; 'image': divided by the image's own width and height (no padding transform).
    """
    if space == 'image':
        return norm_box_xyxy(box, width, height)
    side = max(width, height)
    dx, dy = (side - width) // 2, (side - height) // 2
    x0, y0, x1, y1 = box
    return norm_box_xyxy([x0 + dx, y0 + dy, x1 + dx, y1 + dy], side, side)


class _PointDatasetBase(AnnotationDataset):
    """Shared parts: the version check, the seeded box/point choice and coordinate parsing."""

    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str | None = None,
                 seed: int = 0, version: str = 'box', point_prob: float = 0.5):
        check_choice('version', version, VERSIONS)
        if not 0.0 <= point_prob <= 1.0:
            raise ValueError(f"point_prob must be in [0, 1], got {point_prob}")
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed)
        self.version, self.point_prob = version, point_prob
        for record in self.records:
            if not any(k in record for k in IMAGE_KEYS):
                raise DataFileError(f"{record['__source__']}: missing field 'img_path' (or 'file_path')")

    def region_format(self, index: int) -> str:
        """'box' or 'point' for sample `index`; fixed unless version='both'."""
        if self.version != 'both':
            return self.version
        # Its own seeded stream (a string seed hashes deterministically), independent of the template draw.
        rng = random.Random(f'point-format:{self.seed}:{index}')
        return 'point' if rng.random() < self.point_prob else 'box'

    @staticmethod
    def image_key(record: dict) -> str:
        return next(k for k in IMAGE_KEYS if k in record)

    @staticmethod
    def coords(record: dict, value, size: int, what: str) -> list[float]:
        """A list of `size` numbers as floats; anything else names the record."""
        if (not isinstance(value, (list, tuple)) or len(value) != size
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise DataFileError(f"{record['__source__']}: {what} must be {size} numbers, got {value!r}")
        return [float(v) for v in value]

    def text_field(self, record: dict, key: str) -> str:
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataFileError(f"{record['__source__']}: '{key}' must be a non-empty string, got {value!r}")
        return value.strip()


class _PointQADataset(_PointDatasetBase):
    """A question about the object at a box or a point; the answer is a short text."""

    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER, REGION_PLACEHOLDER)
    question_field = 'question'

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'point_qa.json',
                 seed: int = 0, version: str = 'box', point_prob: float = 0.5,
                 answer_template: str = f'The answer is {ANSWER_PLACEHOLDER}.'):
        if ANSWER_PLACEHOLDER not in answer_template:
            raise ValueError(f"answer_template {answer_template!r} lacks the placeholder {ANSWER_PLACEHOLDER}")
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed,
                         version=version, point_prob=point_prob)
        self.answer_template = answer_template
        # Checked at load so a bad record fails before training starts, naming its file:line.
        for record in self.records:
            missing = [k for k in (self.question_field, 'answer', 'bbox') if k not in record]
            if missing:
                raise DataFileError(f"{record['__source__']}: missing field(s) {missing}")
            self.region(record)
            self.text_field(record, self.question_field)

    def region(self, record: dict) -> tuple[list[float], list[float]]:
        box = self.coords(record, record['bbox'], 4, "'bbox'")
        point = record.get('point')
        point = box_centre(box) if point is None else self.coords(record, point, 2, "'point'")
        return box, point

    def build_item(self, index: int, record: dict) -> dict:
        box, point = self.region(record)
        use_point = self.region_format(index) == 'point'
        question = self.question(index, {
            REGION_PLACEHOLDER: POINTS_PLACEHOLDER if use_point else BOXES_PLACEHOLDER,
            QUESTION_PLACEHOLDER: self.text_field(record, self.question_field),
        })
        answer = self.answer_template.replace(ANSWER_PLACEHOLDER, str(record['answer']).strip())
        return {
            'image': self.get_image(record, self.image_key(record)),
            'target': {'boxes': [box], 'points': [point]},
            'conversations': [
                {'from': 'human', 'value': question,
                 'boxes_seq': None if use_point else [[0]], 'points_seq': [[0]] if use_point else None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': None, 'points_seq': None},
            ],
        }


@DATASETS.register_module()
class PointQALocalDataset(_PointQADataset):
    """PointQA Local-QA: `question` about the object at `bbox` / `point`; the target is `answer`."""


@DATASETS.register_module()
class PointQATwiceDataset(_PointQADataset):
    """PointQA LookTwice-QA; question_type picks the phrasing: 'object', 'super' or 'general'."""

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'point_qa.json',
                 seed: int = 0, version: str = 'box', question_type: str = 'general', point_prob: float = 0.5,
                 answer_template: str = f'The answer is {ANSWER_PLACEHOLDER}.'):
        check_choice('question_type', question_type, TWICE_QUESTION_FIELDS)
        self.question_type = question_type
        self.question_field = TWICE_QUESTION_FIELDS[question_type]
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed,
                         version=version, point_prob=point_prob, answer_template=answer_template)


@DATASETS.register_module()
class V7WPointingDataset(_PointDatasetBase):
    """Visual7W pointing: a 'which' question and candidate regions; the answer is the right candidate.

    shuffle_candidates: reorder the candidates per sample with a seeded RNG (the converter already
        writes them in a seeded random order, so the default keeps the file's order).
    answer_format: None (same as the candidates), 'box' or 'point'.
    meta_space: the space of `meta(i)`'s coordinates, 'square' (after Expand2square, the models'
        default transform) or 'image' (no padding); it must match the model's `conv_args.transform`.
    """

    template_placeholders = (IMAGE_PLACEHOLDER, QUESTION_PLACEHOLDER, CANDIDATES_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'point_v7w.json',
                 seed: int = 0, version: str = 'box', point_prob: float = 0.5, answer_format: str | None = None,
                 shuffle_candidates: bool = False, meta_space: str = 'square',
                 answer_template: str = f'The answer is {ANSWER_PLACEHOLDER}.'):
        if answer_format is not None:
            check_choice('answer_format', answer_format, ('box', 'point'))
        check_choice('meta_space', meta_space, META_SPACES)
        if ANSWER_PLACEHOLDER not in answer_template:
            raise ValueError(f"answer_template {answer_template!r} lacks the placeholder {ANSWER_PLACEHOLDER}")
        super().__init__(filename, image_folder=image_folder, template_file=template_file, seed=seed,
                         version=version, point_prob=point_prob)
        self.answer_format, self.shuffle_candidates = answer_format, shuffle_candidates
        self.meta_space, self.answer_template = meta_space, answer_template
        for record in self.records:
            missing = [k for k in ('question', 'candidates') if k not in record]
            if 'answer_index' not in record and 'answer' not in record:
                missing.append('answer_index')
            if missing:
                raise DataFileError(f"{record['__source__']}: missing field(s) {missing}")
            self.text_field(record, 'question')
            self.choices(record)
            if 'point' in record:
                self.coords(record, record['point'], 2, "'point'")

    def choices(self, record: dict) -> tuple[list[list[float]], int]:
        """(candidate boxes, index of the answer) as stored in the record."""
        where = record['__source__']
        candidates = record['candidates']
        if not isinstance(candidates, list) or len(candidates) < 2:
            raise DataFileError(f"{where}: 'candidates' must be a list of at least 2 boxes, got {candidates!r}")
        boxes = [self.coords(record, c, 4, f"candidate {k}") for k, c in enumerate(candidates)]
        if 'answer_index' in record:
            k = record['answer_index']
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(boxes):
                raise DataFileError(f"{where}: 'answer_index' must be an integer in [0, {len(boxes)}), got {k!r}")
            return boxes, k
        answer = self.coords(record, record['answer'], 4, "'answer'")
        if answer not in boxes:
            raise DataFileError(f"{where}: the 'answer' box {answer} is not one of the candidates")
        return boxes, boxes.index(answer)

    def ordered_choices(self, index: int, record: dict) -> tuple[list[list[float]], int]:
        boxes, answer = self.choices(record)
        if not self.shuffle_candidates:
            return boxes, answer
        order = list(range(len(boxes)))
        random.Random(f'v7w-order:{self.seed}:{index}').shuffle(order)
        return [boxes[i] for i in order], order.index(answer)

    def formats(self, index: int) -> tuple[str, str]:
        """(format of the candidates, format of the answer) for sample `index`."""
        candidates = self.region_format(index)
        return candidates, self.answer_format or candidates

    def build_item(self, index: int, record: dict) -> dict:
        boxes, answer = self.ordered_choices(index, record)
        cand_format, answer_format = self.formats(index)
        cand_placeholder = POINTS_PLACEHOLDER if cand_format == 'point' else BOXES_PLACEHOLDER
        question = self.question(index, {
            CANDIDATES_PLACEHOLDER: ', '.join([cand_placeholder] * len(boxes)),
            QUESTION_PLACEHOLDER: self.text_field(record, 'question'),
        })
        if answer_format != cand_format:
            question += ANSWER_FORMAT_HINTS[answer_format]
        answer_placeholder = POINTS_PLACEHOLDER if answer_format == 'point' else BOXES_PLACEHOLDER
        cand_seq = [[k] for k in range(len(boxes))]

        def seqs(kind: str, seq):
            return {'boxes_seq': seq if kind == 'box' else None, 'points_seq': seq if kind == 'point' else None}

        points = [box_centre(b) for b in boxes]
        if 'point' in record:  # Shikra's files give the answer's point explicitly: prefer it to the centre
            points[answer] = self.coords(record, record['point'], 2, "'point'")
        return {
            'image': self.get_image(record, self.image_key(record)),
            'target': {'boxes': boxes, 'points': points},
            'conversations': [
                {'from': 'human', 'value': question, **seqs(cand_format, cand_seq)},
                {'from': 'gpt', 'value': self.answer_template.replace(ANSWER_PLACEHOLDER, answer_placeholder),
                 **seqs(answer_format, [[answer]])},
            ],
        }

    def image_size(self, record: dict) -> tuple[int, int]:
        """(width, height) from the record when the converter stored it, else from the image header."""
        if isinstance(record.get('width'), int) and isinstance(record.get('height'), int):
            return record['width'], record['height']
        rel = record[self.image_key(record)]
        path = rel if self.image_folder is None else os.path.join(self.image_folder, rel)
        if '://' in path:
            return self.get_image(record, self.image_key(record)).size
        try:
            with Image.open(path) as image:  # reads the header only, no decoding
                return image.size
        except OSError as e:
            raise DataFileError(f"{record['__source__']}: cannot read the size of {path} ({e})") from None

    def meta(self, index: int) -> dict:
        """The GT box and the candidates in normalised coordinates (`meta_space`), for PointingComputeMetrics.

        Coordinates are exact (not rounded to the formatter's precision).
        """
        record = self.records[index]
        boxes, answer = self.ordered_choices(index, record)
        width, height = self.image_size(record)
        candidates = [normalise_box(b, width, height, self.meta_space) for b in boxes]
        return {'gt_box': candidates[answer], 'candidates': candidates, 'answer_index': answer,
                'answer_format': self.formats(index)[1], 'qa_id': record.get('qa_id')}
