"""Box / point formatters: turn normalised coordinates into text and parse them back.

A formatter fills the `<boxes>` / `<points>` placeholders of a conversation turn and owns the
inverse, `extract`, so that predictions can be parsed with exactly the rules that produced the
training text. `PlainBoxFormatter` writes `[0.120,0.340,0.560,0.780]`; several boxes that fill one
placeholder share one bracket, separated by `;`: `[0.1,...,0.4;0.5,...,0.8]`.
"""
from __future__ import annotations

import re

from ..root import BOXES_PLACEHOLDER, BOXES_PROCESSOR, POINTS_PLACEHOLDER

_NUMBER = r'\d+(?:\.\d+)?'


class BoxFormatter:
    """Base class: placeholder filling shared by every formatter; subclasses choose the text."""

    def __init__(self, boxes_placeholder=BOXES_PLACEHOLDER, points_placeholder=POINTS_PLACEHOLDER):
        self.boxes_placeholder = boxes_placeholder
        self.points_placeholder = points_placeholder

    def __call__(self, sentence: str, boxes_seq=None, points_seq=None, boxes=None, points=None) -> str:
        """Replace the k-th placeholder with the boxes/points whose indices are in `*_seq[k]`."""
        sentence = self._fill(sentence, self.boxes_placeholder, boxes_seq, boxes, self.format_boxes)
        return self._fill(sentence, self.points_placeholder, points_seq, points, self.format_points)

    @staticmethod
    def _fill(sentence, placeholder, seq, values, fmt):
        pieces = sentence.split(placeholder)
        if len(pieces) == 1:
            return sentence
        seq = seq or []
        if len(pieces) - 1 != len(seq):
            raise ValueError(f"{len(pieces) - 1} {placeholder} placeholders but {len(seq)} index groups")
        out = [pieces[0]]
        for indices, rest in zip(seq, pieces[1:], strict=True):
            out.append(fmt([values[i] for i in indices]))
            out.append(rest)
        return ''.join(out)

    def format_boxes(self, boxes) -> str:
        raise NotImplementedError

    def format_points(self, points) -> str:
        raise NotImplementedError

    def extract(self, text: str) -> list[list[list[float]]]:
        raise NotImplementedError

    def extract_points(self, text: str) -> list[list[list[float]]]:
        raise NotImplementedError


@BOXES_PROCESSOR.register_module()
class PlainBoxFormatter(BoxFormatter):
    """Normalised coordinates printed with a fixed number of decimals inside square brackets."""

    def __init__(self, precision: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.precision = precision
        box = rf'{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}'
        point = rf'{_NUMBER},{_NUMBER}'
        self.boxes_pattern = re.compile(rf'\[({box}(?:;{box})*)\]')
        self.points_pattern = re.compile(rf'\[({point}(?:;{point})*)\]')

    def _num(self, v: float) -> str:
        return f'{v:.{self.precision}f}'

    def format_boxes(self, boxes) -> str:
        return '[' + ';'.join(','.join(self._num(v) for v in box) for box in boxes) + ']'

    def format_points(self, points) -> str:
        return '[' + ';'.join(','.join(self._num(v) for v in point) for point in points) + ']'

    @staticmethod
    def _parse(match_text: str, size: int):
        return [[float(v) for v in item.split(',')][:size] for item in match_text.split(';')]

    def extract(self, text: str) -> list[list[list[float]]]:
        """All box groups in `text`, one list of boxes per bracket, in reading order."""
        return [self._parse(m.group(1), 4) for m in self.boxes_pattern.finditer(text)]

    def extract_points(self, text: str) -> list[list[list[float]]]:
        return [self._parse(m.group(1), 2) for m in self.points_pattern.finditer(text)]
