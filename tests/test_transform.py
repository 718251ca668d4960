"""Tests for Expand2square and box/point normalisation helpers."""
import pytest
from PIL import Image

from mllm.dataset.root import TRANSFORMS
from mllm.dataset.utils.transform import CLIP_MEAN_COLOR, Expand2square, de_norm_box_xyxy, norm_box_xyxy, norm_point_xy


def gradient(width, height):
    image = Image.new('RGB', (width, height))
    image.putdata([(x % 256, y % 256, 7) for y in range(height) for x in range(width)])
    return image


@pytest.mark.parametrize('size, offset', [((96, 64), (0, 16)), ((64, 96), (16, 0)), ((97, 64), (0, 16))])
def test_expand2square_geometry(size, offset):
    width, height = size
    dx, dy = offset
    image = gradient(width, height)
    target = {'boxes': [[10, 5, 50, 40], [0, 0, width, height]], 'points': [[3, 4]], 'label': 'keep'}
    out, shifted = Expand2square()(image, target)
    side = max(size)
    assert out.size == (side, side) and out.mode == 'RGB'
    assert out.getpixel((dx, dy)) == image.getpixel((0, 0))
    assert out.getpixel((dx + width - 1, dy + height - 1)) == image.getpixel((width - 1, height - 1))
    assert out.getpixel((dx + 30, dy + 20)) == (30, 20, 7)
    assert out.crop((dx, dy, dx + width, dy + height)).tobytes() == image.tobytes()
    assert out.getpixel((0, 0)) == CLIP_MEAN_COLOR == (122, 116, 104)
    assert out.getpixel((side - 1, side - 1)) == (122, 116, 104)
    assert shifted['boxes'] == [[10 + dx, 5 + dy, 50 + dx, 40 + dy], [dx, dy, width + dx, height + dy]]
    assert shifted['points'] == [[3 + dx, 4 + dy]]
    assert shifted['label'] == 'keep'
    assert target['boxes'][0] == [10, 5, 50, 40]  # the input target is not modified


def test_expand2square_square_and_no_target():
    image = gradient(80, 80)
    target = {'boxes': [[1, 2, 3, 4]]}
    out, same = Expand2square()(image, target)
    assert out is image and same == {'boxes': [[1, 2, 3, 4]]}
    out, none = Expand2square()(gradient(30, 20), None)
    assert out.size == (30, 30) and none is None


def test_expand2square_custom_colour_and_registry():
    transform = TRANSFORMS.build(dict(type='Expand2square', background_color=[0, 0, 255]))
    out, shifted = transform(gradient(20, 10), {'boxes': [[0, 0, 20, 10]]})
    assert out.getpixel((0, 0)) == (0, 0, 255)
    assert shifted['boxes'] == [[0, 5, 20, 15]]


def test_norm_box_clamps():
    assert norm_box_xyxy([10, 5, 50, 40], 100, 50) == [0.1, 0.1, 0.5, 0.8]
    assert norm_box_xyxy([-5, -1, 120, 60], 100, 50) == [0.0, 0.0, 1.0, 1.0]
    assert norm_point_xy([-3, 75], 100, 50) == [0.0, 1.0]
    assert norm_point_xy([25, 25], 100, 50) == [0.25, 0.5]


def test_de_norm_inverts_norm():
    box = [12, 7, 80, 33]
    assert de_norm_box_xyxy(norm_box_xyxy(box, 96, 64), 96, 64) == pytest.approx(box)
