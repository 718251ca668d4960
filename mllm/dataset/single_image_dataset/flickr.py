"""Flickr30K Entities: grounded captioning and its reverse (caption from given grounded phrases).

Reads Shikra's CWB_flickr30k_*.jsonl (written by tools/prepare_data/flickr30k_entities.py): one record
per caption with `image_id` (image `<image_id>.jpg` in `image_folder`, or an explicit `img_path`),
`sentence` with grounded phrases wrapped in `<ph_st>...<ph_ed>`, `boxes` (pixel xyxy of the original
image) and `boxes_seq` (the box indices of each marked phrase, in order). Records are checked at load:
a bad marker, box or boxes_seq index raises an error naming `file:line`.

Shikra's files and ours share the box values (the official loader's [xmin-1, ymin-1, xmax-1, ymax-1])
but not the box lists: Shikra's list a caption's boxes in set order and repeat a box shared by two
chains. So that both give the same item for the same caption, every record is put in one canonical
form at load (`canonical_boxes`: boxes in order of first mention, equal boxes merged) and its boxes
are clamped to the image when the item is built (as the converter clamps to the XML's size).

- `Flickr30kDataset`: the question asks for a grounded caption; the answer is the caption with a
  `<boxes>` placeholder after every grounded phrase ("A man <boxes> in an orange hat <boxes> .").
- `Flickr30kReverseDataset`: the question lists the grounded phrases with their boxes
  ("A man <boxes>, an orange hat <boxes>"); the answer is the plain caption. Captions without any
  grounded phrase are left out (nothing to give in the question).
"""
from __future__ import annotations

from ..root import BOXES_PLACEHOLDER, DATASETS, IMAGE_PLACEHOLDER
from ..utils.io import DataFileError
from .base import AnnotationDataset

PHRASE_START = '<ph_st>'
PHRASE_END = '<ph_ed>'
# Placeholder of the reverse templates: replaced by "phrase <boxes>, phrase <boxes>, ...".
PHRASES_PLACEHOLDER = '<phrases>'


def split_marked_sentence(sentence: str, where: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove the markers; return the plain text and each phrase's (start, end) character span in it."""
    plain, spans, pos, start = [], [], 0, None
    length = 0
    while pos < len(sentence):
        if sentence.startswith(PHRASE_START, pos):
            if start is not None:
                raise DataFileError(f"{where}: nested {PHRASE_START} in sentence {sentence!r}")
            start, pos = length, pos + len(PHRASE_START)
        elif sentence.startswith(PHRASE_END, pos):
            if start is None:
                raise DataFileError(f"{where}: {PHRASE_END} without {PHRASE_START} in sentence {sentence!r}")
            spans.append((start, length))
            start, pos = None, pos + len(PHRASE_END)
        else:
            plain.append(sentence[pos])
            length += 1
            pos += 1
    if start is not None:
        raise DataFileError(f"{where}: {PHRASE_START} is never closed in sentence {sentence!r}")
    return ''.join(plain), spans


def check_boxes(boxes, where: str) -> None:
    """Raise DataFileError naming `where` unless `boxes` is a list of pixel xyxy boxes."""
    if not isinstance(boxes, list):
        raise DataFileError(f"{where}: 'boxes' must be a list of [x0, y0, x1, y1]")
    for k, box in enumerate(boxes):
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise DataFileError(f"{where}: boxes[{k}] = {box!r} is not [x0, y0, x1, y1]")
        if box[2] < box[0] or box[3] < box[1]:
            raise DataFileError(f"{where}: boxes[{k}] = {box} has x1<x0 or y1<y0 (expected pixel xyxy)")


def check_boxes_seq(seq, marked: int, num_boxes: int, where: str, field: str = 'boxes_seq',
                    text: str = 'sentence') -> list[list[int]]:
    """The groups of `field`, one per phrase marked in the `text`, each a non-empty list of valid box indices."""
    if not isinstance(seq, list) or len(seq) != marked:
        count = len(seq) if isinstance(seq, list) else type(seq).__name__
        raise DataFileError(f"{where}: the {text} marks {marked} phrase(s) but {field} has {count} group(s)")
    for k, group in enumerate(seq):
        if not isinstance(group, list) or not group:
            raise DataFileError(f"{where}: {field}[{k}] = {group!r} must be a non-empty list of box indices")
        for i in group:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < num_boxes:
                raise DataFileError(f"{where}: {field}[{k}] refers to box {i!r} but the record has "
                                    f"{num_boxes} box(es)")
    return [list(group) for group in seq]


def check_record(record: dict, where: str) -> None:
    """Raise DataFileError naming `where` unless boxes, markers and boxes_seq agree."""
    check_boxes(record['boxes'], where)
    _, spans = split_marked_sentence(record['sentence'], where)
    check_boxes_seq(record['boxes_seq'], len(spans), len(record['boxes']), where)


def canonical_boxes(boxes: list, boxes_seq: list[list[int]]) -> tuple[list[list[float]], list[list[int]]]:
    """(boxes, boxes_seq) renumbered: boxes in order of first mention in boxes_seq, each distinct box
    once (equal coordinates merged, repeats within a group dropped), unmentioned boxes left out."""
    index: dict[tuple[float, ...], int] = {}
    out_seq = []
    for group in boxes_seq:
        new_group: list[int] = []
        for i in group:
            j = index.setdefault(tuple(float(v) for v in boxes[i]), len(index))
            if j not in new_group:
                new_group.append(j)
        out_seq.append(new_group)
    return [list(box) for box in index], out_seq


class _FlickrBase(AnnotationDataset):
    required_fields = ('image_id', 'sentence', 'boxes', 'boxes_seq')
    records_in_memory = True  # boxes are made canonical in place at load

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str | None = None,
                 seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)
        for record in self.records:
            check_record(record, record.get('__source__', filename))
            record['boxes'], record['boxes_seq'] = canonical_boxes(record['boxes'], record['boxes_seq'])

    def _image(self, record: dict):
        # Shikra's records name the image by id only; an explicit img_path (other layouts) wins.
        return self.get_image({**record, 'img_path': record.get('img_path') or f"{record['image_id']}.jpg"})

    @staticmethod
    def _target(record: dict, image_size: tuple[int, int]) -> dict:
        """The record's boxes clamped to [0, width] x [0, height]: Shikra's files keep the official
        loader's values unclamped, our converter clamps them to the same range."""
        w, h = image_size
        return {'boxes': [[min(max(v, 0.0), limit) for v, limit in zip(box, (w, h, w, h), strict=True)]
                          for box in record['boxes']], 'points': []}

    def meta(self, index: int) -> dict:
        record = self.records[index]
        caption, _ = split_marked_sentence(record['sentence'], record.get('__source__', self.filename))
        meta = {'image_id': str(record['image_id']), 'caption': caption}
        if 'captions' in record:  # --per-image files carry every reference caption of the image
            meta['references'] = list(record['captions'])
        return meta


@DATASETS.register_module()
class Flickr30kDataset(_FlickrBase):
    """Grounded captioning: '<image> Describe ... with boxes' -> 'A man <boxes> in an orange hat <boxes> .'"""

    template_placeholders = (IMAGE_PLACEHOLDER,)

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str = 'flickr30k.json',
                 seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)

    def build_item(self, index: int, record: dict) -> dict:
        answer = record['sentence'].replace(PHRASE_START, '').replace(PHRASE_END, f' {BOXES_PLACEHOLDER}')
        image = self._image(record)
        return {
            'image': image,
            'target': self._target(record, image.size),
            'conversations': [
                {'from': 'human', 'value': self.question(index), 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': answer, 'boxes_seq': [list(g) for g in record['boxes_seq']],
                 'points_seq': None},
            ],
        }


@DATASETS.register_module()
class Flickr30kReverseDataset(_FlickrBase):
    """Caption from grounded phrases: '<image> ... A man <boxes>, an orange hat <boxes> ...' -> plain caption."""

    template_placeholders = (IMAGE_PLACEHOLDER, PHRASES_PLACEHOLDER)

    def __init__(self, filename: str, image_folder: str | None = None,
                 template_file: str = 'flickr30k_reverse.json', seed: int = 0):
        super().__init__(filename, image_folder, template_file, seed)
        self.records = [r for r in self.records if r['boxes_seq']]

    def build_item(self, index: int, record: dict) -> dict:
        caption, spans = split_marked_sentence(record['sentence'], record['__source__'])
        listed, boxes_seq, seen = [], [], set()
        for (start, end), group in zip(spans, record['boxes_seq'], strict=True):
            key = (caption[start:end], tuple(group))  # a repeated mention of the same thing is listed once
            if key in seen:
                continue
            seen.add(key)
            listed.append(f'{caption[start:end]} {BOXES_PLACEHOLDER}')
            boxes_seq.append(list(group))
        question = self.question(index, {PHRASES_PLACEHOLDER: ', '.join(listed)})
        image = self._image(record)
        return {
            'image': image,
            'target': self._target(record, image.size),
            'conversations': [
                {'from': 'human', 'value': question, 'boxes_seq': boxes_seq, 'points_seq': None},
                {'from': 'gpt', 'value': caption, 'boxes_seq': None, 'points_seq': None},
            ],
        }
