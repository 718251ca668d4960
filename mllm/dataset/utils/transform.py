"""Geometric image transforms that keep boxes and points attached to the same pixels."""
from __future__ import annotations

from PIL import Image

from ..root import TRANSFORMS

# CLIP's mean pixel colour: padding with it keeps the padded area neutral for CLIP-style towers.
CLIP_MEAN_COLOR = (122, 116, 104)


@TRANSFORMS.register_module()
class Expand2square:
    """Pad an image to a square of side max(w, h), centred, and shift boxes/points accordingly."""

    def __init__(self, background_color=CLIP_MEAN_COLOR):
        self.background_color = tuple(background_color)

    def __call__(self, image: Image.Image, target: dict | None = None):
        width, height = image.size
        side = max(width, height)
        dx, dy = (side - width) // 2, (side - height) // 2
        if dx == 0 and dy == 0:
            return image, target
        canvas = Image.new(image.mode, (side, side), self.background_color)
        canvas.paste(image, (dx, dy))
        if target is None:
            return canvas, None
        shifted = dict(target)
        if target.get('boxes') is not None:
            shifted['boxes'] = [[x0 + dx, y0 + dy, x1 + dx, y1 + dy] for x0, y0, x1, y1 in target['boxes']]
        if target.get('points') is not None:
            shifted['points'] = [[x + dx, y + dy] for x, y in target['points']]
        return canvas, shifted


def norm_box_xyxy(box, width: float, height: float) -> list[float]:
    """Pixel xyxy -> coordinates relative to the image size, clamped to [0, 1]."""
    x0, y0, x1, y1 = box
    return [min(max(v, 0.0), 1.0) for v in (x0 / width, y0 / height, x1 / width, y1 / height)]


def norm_point_xy(point, width: float, height: float) -> list[float]:
    x, y = point
    return [min(max(x / width, 0.0), 1.0), min(max(y / height, 0.0), 1.0)]


def de_norm_box_xyxy(box, width: float, height: float) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0 * width, y0 * height, x1 * width, y1 * height]
