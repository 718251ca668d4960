"""Shared pieces of the grounding metrics (REC, Visual7W pointing): the formatter they parse with, exact geometry.

Formatter: a metric parses predictions and references with the model's own box formatter, passed as the
built object `box_formatter` (the builder injects `preprocessor['target']`), or built from a config dict
`formatter`, or the default `PlainBoxFormatter()`. Giving both is an error: it is not clear which wins.

Geometry: coordinates are parsed from decimal text ("0.084"). As binary floats an IoU that is exactly 1/2
on that grid can come out as 0.5000000000000001 and pass "IoU > 0.5". Every coordinate is therefore read
as the decimal its shortest repr spells (for a parsed value: the number the text wrote) and the IoU is
computed in fractions, so an exact tie is a tie and never a hit.
"""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from ..dataset.process_function.box_formatter import PlainBoxFormatter
from ..dataset.root import BOXES_PROCESSOR


def resolve_box_formatter(formatter: dict | None, box_formatter, owner: str, needs=('extract',)):
    """The formatter a metric parses with: the object `box_formatter`, else built from `formatter`, else plain."""
    if formatter is not None and box_formatter is not None:
        raise ValueError(f"{owner}: give either formatter (a config dict) or box_formatter (a built formatter), "
                         "not both")
    if box_formatter is None:
        return BOXES_PROCESSOR.build(formatter) if formatter else PlainBoxFormatter()
    if isinstance(box_formatter, dict):
        raise TypeError(f"{owner}: box_formatter must be a built formatter object; pass a config dict as formatter=")
    missing = [name for name in needs if not callable(getattr(box_formatter, name, None))]
    if missing:
        raise TypeError(f"{owner}: box_formatter {type(box_formatter).__name__} has no {', '.join(missing)}()")
    return box_formatter


def exact(value) -> Fraction:
    """A coordinate as an exact fraction: floats by their shortest decimal repr (0.084 -> 84/1000)."""
    if isinstance(value, Fraction | int | Decimal):
        return Fraction(value)
    return Fraction(repr(float(value)))


def box_iou(a, b) -> Fraction:
    """Exact IoU of two xyxy boxes; 0 when the union is empty (degenerate or inverted boxes)."""
    ax0, ay0, ax1, ay1 = (exact(v) for v in a)
    bx0, by0, bx1, by1 = (exact(v) for v in b)
    inter = max(min(ax1, bx1) - max(ax0, bx0), 0) * max(min(ay1, by1) - max(ay0, by0), 0)
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return Fraction(inter) / union if union > 0 else Fraction(0)


def point_in_box(point, box) -> bool:
    """Whether the point lies inside the box, borders included (compared exactly)."""
    x, y = (exact(v) for v in point)
    x0, y0, x1, y1 = (exact(v) for v in box)
    return x0 <= x <= x1 and y0 <= y <= y1
