"""Tests for PlainBoxFormatter: placeholder filling, exact text and format/extract round trips."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mllm.dataset.process_function.box_formatter import PlainBoxFormatter

FMT = PlainBoxFormatter()
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)


@st.composite
def boxes_strategy(draw):
    xs = sorted([draw(unit), draw(unit)])
    ys = sorted([draw(unit), draw(unit)])
    return [xs[0], ys[0], xs[1], ys[1]]


def close(a, b, tol=1e-9):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


@settings(max_examples=150, deadline=None)
@given(st.lists(boxes_strategy(), min_size=1, max_size=5))
def test_boxes_round_trip(boxes):
    groups = FMT.extract(FMT.format_boxes(boxes))
    assert len(groups) == 1 and len(groups[0]) == len(boxes)
    for got, box in zip(groups[0], boxes):
        assert close(got, [round(v, 3) for v in box])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(unit, unit).map(list), min_size=1, max_size=5))
def test_points_round_trip(points):
    groups = FMT.extract_points(FMT.format_points(points))
    assert len(groups) == 1 and len(groups[0]) == len(points)
    for got, point in zip(groups[0], points):
        assert close(got, [round(v, 3) for v in point])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(boxes_strategy(), min_size=1, max_size=3), min_size=1, max_size=4))
def test_sentence_round_trip_several_groups(groups):
    boxes = [b for g in groups for b in g]
    seq, k = [], 0
    for g in groups:
        seq.append(list(range(k, k + len(g))))
        k += len(g)
    sentence = ' and '.join(f'object {i} at <boxes>' for i in range(len(groups))) + ' .'
    text = FMT(sentence, boxes_seq=seq, boxes=boxes)
    assert '<boxes>' not in text
    extracted = FMT.extract(text)
    assert [len(g) for g in extracted] == [len(g) for g in groups]
    for got_group, group in zip(extracted, groups):
        for got, box in zip(got_group, group):
            assert close(got, [round(v, 3) for v in box])


def test_exact_text():
    assert FMT.format_boxes([[0.12, 0.34, 0.56, 0.78]]) == '[0.120,0.340,0.560,0.780]'
    assert FMT.format_points([[0.5, 0.25]]) == '[0.500,0.250]'
    assert FMT.format_boxes([[0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]]) == '[0.000,0.000,1.000,1.000;0.100,0.200,0.300,0.400]'


def test_call_fills_placeholders_in_order():
    boxes = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.0, 0.0, 1.0, 1.0]]
    points = [[0.25, 0.75]]
    text = FMT('A <boxes> B <boxes> C <points> D', boxes_seq=[[2], [0, 1]], points_seq=[[0]],
               boxes=boxes, points=points)
    assert text == ('A [0.000,0.000,1.000,1.000] B [0.100,0.200,0.300,0.400;0.500,0.600,0.700,0.800] '
                    'C [0.250,0.750] D')


def test_call_same_box_twice_and_no_placeholder():
    boxes = [[0.1, 0.2, 0.3, 0.4]]
    assert FMT('<boxes> = <boxes>', boxes_seq=[[0], [0]], boxes=boxes) == \
        '[0.100,0.200,0.300,0.400] = [0.100,0.200,0.300,0.400]'
    assert FMT('no placeholder here', boxes_seq=None, boxes=boxes) == 'no placeholder here'


@pytest.mark.parametrize('seq', [None, [], [[0]], [[0], [0], [0]]])
def test_wrong_number_of_groups_raises(seq):
    with pytest.raises(ValueError, match='2 <boxes> placeholders'):
        FMT('<boxes> and <boxes>', boxes_seq=seq, boxes=[[0.1, 0.1, 0.2, 0.2]])


def test_wrong_number_of_point_groups_raises():
    with pytest.raises(ValueError, match='<points>'):
        FMT('<points>', points_seq=[[0], [0]], points=[[0.1, 0.1]])


def test_extract_ignores_garbage_and_keeps_reading_order():
    text = ('garbage [1,2] text [0.9,0.8,0.7,0.6] more [0.1,0.2,0.3] stuff (0.1,0.2,0.3,0.4) '
            'then [0.100,0.200,0.300,0.400;0.5,0.5,0.6,0.6] and [x,0.1,0.2,0.3] end [0.000,0.000,1.000,1.000]')
    assert FMT.extract(text) == [[[0.9, 0.8, 0.7, 0.6]],
                                 [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.6]],
                                 [[0.0, 0.0, 1.0, 1.0]]]
    assert FMT.extract_points(text) == [[[1.0, 2.0]]]
    assert FMT.extract('no boxes at all') == []
    assert FMT.extract_points('') == []


def test_precision_option():
    fmt = PlainBoxFormatter(precision=2)
    assert fmt.format_boxes([[0.125, 0.5, 0.994, 1.0]]) == '[0.12,0.50,0.99,1.00]'
    assert fmt.extract('[0.12,0.50,0.99,1.00]') == [[[0.12, 0.5, 0.99, 1.0]]]
