"""Checks that an item follows the canonical format before it is turned into model inputs.

Every problem raises `InvalidSampleError` naming the dataset, the sample (index and, where the
loader recorded it, the source `file:line`) and what is wrong, so a bad record is found in seconds.
"""
from __future__ import annotations

from .root import BOXES_PLACEHOLDER, IMAGE_PLACEHOLDER, POINTS_PLACEHOLDER


class InvalidSampleError(ValueError):
    """A dataset item violates the canonical format."""


def _where(dataset_name: str, index: int, item: dict) -> str:
    source = item.get('source')
    return f"{dataset_name}[{index}]" + (f" ({source})" if source else '')


def _image_of(target: dict, key: str, k: int) -> int:
    owners = target.get(key)
    return 0 if owners is None else owners[k]


def validate_item(item: dict, dataset_name: str, index: int, image_size=None, box_tolerance: float = 1.0,
                  image_sizes=None):
    """Raise InvalidSampleError if `item` is malformed.

    image_size (w, h) of a one-image item, or image_sizes [(w, h), ...] of every image, when given,
    lets boxes and points be checked against the image they were drawn on: `target['boxes_image'][k]`
    (and `points_image`) is the index of box k's image, 0 when the field is absent. A tolerance of
    `box_tolerance` pixels absorbs the rounding found in public annotations.
    """
    where = _where(dataset_name, index, item)

    def fail(problem):
        raise InvalidSampleError(f"{where}: {problem}")

    target = item.get('target') or {}
    boxes = target.get('boxes') or []
    points = target.get('points') or []
    if image_sizes is None and image_size is not None:
        image_sizes = [image_size]
    if image_sizes is not None and not image_sizes and (boxes or points):
        fail('boxes/points given but the item has no image to refer to')
    for key, pool in (('boxes_image', boxes), ('points_image', points)):
        owners = target.get(key)
        if owners is None:
            continue
        if not isinstance(owners, (list, tuple)) or len(owners) != len(pool):
            noun = 'box' if key == 'boxes_image' else 'point'
            fail(f"target['{key}'] must give one image index per {noun} ({len(pool)}), got {owners!r}")
        for k, owner in enumerate(owners):
            if not isinstance(owner, int) or isinstance(owner, bool) or owner < 0 or (
                    image_sizes is not None and owner >= len(image_sizes)):
                count = len(image_sizes) if image_sizes is not None else '?'
                fail(f"target['{key}'][{k}] = {owner!r} is not the index of one of the item's {count} images")
    for k, box in enumerate(boxes):
        if len(box) != 4:
            fail(f"box {k} has {len(box)} values, expected 4 (x0, y0, x1, y1)")
        x0, y0, x1, y1 = box
        if x1 < x0 or y1 < y0:
            fail(f"box {k} {list(box)} has x1<x0 or y1<y0 (expected pixel xyxy)")
        if image_sizes is not None:
            w, h = image_sizes[_image_of(target, 'boxes_image', k)]
            if x0 < -box_tolerance or y0 < -box_tolerance or x1 > w + box_tolerance or y1 > h + box_tolerance:
                fail(f"box {k} {list(box)} lies outside the {w}x{h} image")
    for k, point in enumerate(points):
        if len(point) != 2:
            fail(f"point {k} has {len(point)} values, expected 2 (x, y)")
        if image_sizes is not None:
            w, h = image_sizes[_image_of(target, 'points_image', k)]
            x, y = point
            if not (-box_tolerance <= x <= w + box_tolerance and -box_tolerance <= y <= h + box_tolerance):
                fail(f"point {k} {list(point)} lies outside the {w}x{h} image")

    conversations = item.get('conversations')
    if not conversations:
        fail('no conversations')
    for t, turn in enumerate(conversations):
        role, value = turn.get('from'), turn.get('value')
        if role not in ('human', 'gpt'):
            fail(f"turn {t} has role {role!r}, expected 'human' or 'gpt'")
        if not isinstance(value, str):
            fail(f"turn {t} has no text value")
        if IMAGE_PLACEHOLDER in value and role != 'human':
            fail(f"turn {t}: {IMAGE_PLACEHOLDER} may only appear in human turns")
        for placeholder, seq_key, pool, name in ((BOXES_PLACEHOLDER, 'boxes_seq', boxes, 'boxes'),
                                                 (POINTS_PLACEHOLDER, 'points_seq', points, 'points')):
            count = value.count(placeholder)
            seq = turn.get(seq_key) or []
            if count != len(seq):
                fail(f"turn {t} has {count} {placeholder} placeholders but {seq_key} has {len(seq)} groups")
            for group in seq:
                for i in group:
                    if not isinstance(i, int) or not 0 <= i < len(pool):
                        fail(f"turn {t}: {seq_key} refers to {name}[{i}] but the target has {len(pool)} {name}")
    if conversations[-1]['from'] != 'gpt':
        fail('the last turn must be an assistant (gpt) turn')
