"""Tests for the REC dataset, its question templates and RECComputeMetrics."""
import json
import re
from fractions import Fraction

import pytest

from mllm.dataset.process_function.box_formatter import BoxFormatter, PlainBoxFormatter
from mllm.dataset.root import METRICS
from mllm.dataset.single_image_dataset.rec import RECComputeMetrics, RECDataset, box_iou
from mllm.dataset.utils.question_templates import QuestionTemplates


def test_rec_items_follow_canonical_format(rec_data):
    ds = RECDataset(rec_data['jsonl'], rec_data['image_folder'])
    assert len(ds) == 3
    for k, (_name, size, expr, bbox) in enumerate(rec_data['records']):
        sample = ds[k]
        assert sample['image'].size == size and sample['image'].mode == 'RGB'
        assert sample['image'].getpixel((0, 0)) == (255, 0, 0)
        assert sample['source'] == f"{rec_data['jsonl']}:{k + 1}"
        assert sample['target'] == {'boxes': [[float(v) for v in bbox]]}
        assert all(isinstance(v, float) for v in sample['target']['boxes'][0])
        human, gpt = sample['conversations']
        assert human['from'] == 'human' and gpt['from'] == 'gpt'
        assert expr in human['value'] and human['value'].startswith('<image>')
        assert '<expr>' not in human['value']
        assert gpt == {'from': 'gpt', 'value': 'Answer: <boxes> .', 'boxes_seq': [[0]]}


def test_question_choice_deterministic_per_index_and_seed(rec_data):
    a = RECDataset(rec_data['jsonl'], rec_data['image_folder'], seed=3)
    b = RECDataset(rec_data['jsonl'], rec_data['image_folder'], seed=3)
    order = [2, 0, 1, 2, 0]
    first = {k: a[k]['conversations'][0]['value'] for k in order}  # access order does not matter
    assert {k: b[k]['conversations'][0]['value'] for k in (0, 1, 2)} == first
    t = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=3)
    assert [t.get(i) for i in range(50)] == [t.get(i) for i in range(50)]
    other = QuestionTemplates('REC.json', required=('<image>', '<expr>'), seed=4)
    assert [t.get(i) for i in range(50)] != [other.get(i) for i in range(50)]
    assert len({t.get(i) for i in range(200)}) == len(t.templates)  # every phrasing gets used
    expected = t.get(1).replace('<expr>', rec_data['records'][1][2])
    assert a[1]['conversations'][0]['value'] == expected


def test_custom_answer_and_template(rec_data):
    tpl = rec_data['root'] / 'tpl.json'
    tpl.write_text(json.dumps(['<image> Box of <expr>?']))
    ds = RECDataset(rec_data['jsonl'], rec_data['image_folder'], template_file=str(tpl), answer='<boxes>')
    sample = ds[0]
    assert sample['conversations'][0]['value'] == '<image> Box of the red circle?'
    assert sample['conversations'][1]['value'] == '<boxes>'


def test_template_without_expr_raises_at_load(tmp_path):
    path = tmp_path / 'bad_templates.json'
    path.write_text(json.dumps(['<image> Where is <expr>?', '<image> Where is it?']))
    with pytest.raises(ValueError) as info:
        QuestionTemplates(str(path), required=('<image>', '<expr>'))
    message = str(info.value)
    assert str(path) in message and 'template 1' in message and "'<image> Where is it?'" in message
    assert '<expr>' in message


def test_rec_dataset_with_bad_template_file(rec_data):
    path = rec_data['root'] / 'noexpr.json'
    path.write_text(json.dumps(['<image> Where?']))
    with pytest.raises(ValueError, match='noexpr.json'):
        RECDataset(rec_data['jsonl'], rec_data['image_folder'], template_file=str(path))


def test_template_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        QuestionTemplates(str(tmp_path / 'nope.json'))
    empty = tmp_path / 'empty.json'
    empty.write_text('[]')
    with pytest.raises(ValueError, match='empty.json'):
        QuestionTemplates(str(empty))


def test_box_iou_values():
    assert box_iou([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert box_iou([0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]) == pytest.approx(1 / 3)
    assert box_iou([0, 0, 0.2, 0.2], [0.5, 0.5, 1, 1]) == 0.0
    assert box_iou([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]) == 0.0  # degenerate


def test_metrics_on_crafted_predictions():
    ref = 'Answer: [0.000,0.000,0.500,0.500] .'
    preds = [
        'Answer: [0.000,0.000,0.500,0.500] .',                          # exact: IoU 1
        'Answer: [0.250,0.000,0.750,0.500] .',                          # shifted: IoU 1/3
        'Answer: [0.000,0.000,0.500,0.500;0.100,0.100,0.200,0.200] .',  # two boxes in one group
        'Answer: [0.000,0.000,0.500,0.500] and [0.1,0.1,0.2,0.2]',      # two groups
        'Answer: somewhere on the left .',                              # no box
        'Answer: [0.000,0.000,0.400,0.500] .',                          # IoU 0.8
    ]
    metrics, verdicts = RECComputeMetrics()(preds, [ref] * len(preds))
    assert metrics['total'] == 6
    assert metrics['parse_failures'] == 3
    assert metrics['accuracy'] == pytest.approx(2 / 6)
    assert metrics['miou'] == pytest.approx((1 + 1 / 3 + 0.8) / 6)
    assert set(metrics) == {'accuracy', 'miou', 'parse_failures', 'total'}
    assert [v['correct'] for v in verdicts] == [True, False, False, False, False, True]
    assert [v['parse_failed'] for v in verdicts] == [False, False, True, True, True, False]
    assert [v['iou'] for v in verdicts] == [1.0, pytest.approx(1 / 3, abs=1e-6), 0.0, 0.0, 0.0,
                                            pytest.approx(0.8, abs=1e-6)]
    assert verdicts[0]['pred_boxes'] == [[[0.0, 0.0, 0.5, 0.5]]]
    assert verdicts[0]['target_boxes'] == [[[0.0, 0.0, 0.5, 0.5]]]
    assert verdicts[4]['pred_boxes'] == []


def test_metrics_threshold_is_strict():
    ref = '[0.000,0.000,1.000,1.000]'
    half = '[0.000,0.000,0.500,1.000]'  # IoU exactly 0.5
    metrics, _ = RECComputeMetrics()([half], [ref])
    assert metrics == {'accuracy': 0.0, 'miou': 0.5, 'parse_failures': 0, 'total': 1}
    metrics, _ = RECComputeMetrics(iou_threshold=0.4)([half], [ref])
    assert metrics['accuracy'] == 1.0


def test_metrics_edge_cases():
    metrics, verdicts = RECComputeMetrics()([], [])
    assert metrics == {'accuracy': 0.0, 'miou': 0.0, 'parse_failures': 0, 'total': 0} and verdicts == []
    with pytest.raises(ValueError, match='exactly one box'):
        RECComputeMetrics()(['[0.1,0.1,0.2,0.2]'], ['no box'])
    with pytest.raises(ValueError):
        RECComputeMetrics()(['a', 'b'], ['[0.1,0.1,0.2,0.2]'])


def test_metrics_with_formatter_from_config():
    metric = RECComputeMetrics(formatter=dict(type='PlainBoxFormatter', precision=2))
    metrics, _ = metric(['[0.10,0.10,0.50,0.50]'], ['[0.10,0.10,0.50,0.50]'])
    assert metrics['accuracy'] == 1.0 and metrics['miou'] == pytest.approx(1.0)


def test_fixture_through_prepare_data(rec_data, family):
    from mmengine.config import ConfigDict

    from mllm.dataset.builder import prepare_data

    rec = dict(type='RECDataset', filename=rec_data['jsonl'], image_folder=rec_data['image_folder'])
    data_args = ConfigDict(train=rec, test=dict(rec, name='rec-test'),
                           compute_metric=dict(type='RECComputeMetrics'),
                           multitest={'again': {'cfg': rec, 'compute_metric': dict(type='RECComputeMetrics')}})
    model_args = ConfigDict(conv_args=dict(transform=dict(type='Expand2square')))
    out = prepare_data(data_args, model_args, family)
    assert out['validation'] is None
    assert out['train'].mode == 'train' and out['test'].mode == 'eval' and out['test'].name == 'rec-test'
    assert out['multitest']['again']['dataset'].mode == 'eval'
    tok = family.tokenizer
    references = [tok.decode(out['test'][k]['labels']) for k in range(3)]
    assert references == ['Answer: [0.104,0.219,0.521,0.583] .',
                          'Answer: [0.167,0.500,0.833,1.000] .',  # the border-touching box of the 64x96 image
                          'Answer: [0.250,0.250,0.750,0.875] .']
    metrics, _ = out['compute_metric'](references, references)
    assert metrics == {'accuracy': 1.0, 'miou': 1.0, 'parse_failures': 0, 'total': 3}
    train = out['train'][1]
    assert tok.decode(train['labels'][train['labels'] != -100]) == ' Answer: [0.167,0.500,0.833,1.000] .</s>'


def test_exact_half_iou_is_not_a_hit():
    # inter = (0.267-0.084) x (0.627-0.332) = 0.183 x 0.295; union = the reference, 0.366 x 0.295:
    # IoU = 0.183 / 0.366 = 1/2 exactly. Floats give 0.5000000000000001, which used to pass "IoU > 0.5".
    pred, ref = 'Answer: [0.084,0.332,0.267,0.627] .', 'Answer: [0.084,0.332,0.450,0.627] .'
    assert box_iou([0.084, 0.332, 0.267, 0.627], [0.084, 0.332, 0.450, 0.627]) == Fraction(1, 2)
    metrics, verdicts = RECComputeMetrics()([pred], [ref])
    assert metrics == {'accuracy': 0.0, 'miou': 0.5, 'parse_failures': 0, 'total': 1}
    assert verdicts[0]['iou'] == 0.5 and verdicts[0]['correct'] is False
    # One thousandth wider: inter 0.184 x 0.295, IoU 0.184/0.366 > 1/2 -> a hit; one narrower -> a miss.
    wider, narrower = 'Answer: [0.084,0.332,0.268,0.627] .', 'Answer: [0.084,0.332,0.266,0.627] .'
    _, verdicts = RECComputeMetrics()([wider, narrower], [ref, ref])
    assert [v['correct'] for v in verdicts] == [True, False]
    # A decimal threshold is a decimal: IoU 0.14/0.2 = 0.7 exactly is not > 0.7 (floats: 0.7000000000000001).
    metrics, _ = RECComputeMetrics(iou_threshold=0.7)(['[0.000,0.000,0.140,1.000]'], ['[0.000,0.000,0.200,1.000]'])
    assert metrics['accuracy'] == 0.0 and metrics['miou'] == pytest.approx(0.7)


class AngleBoxFormatter(BoxFormatter):
    """A model's own box grammar, unknown to PlainBoxFormatter: `<0.100 0.200 0.300 0.400>`."""

    _BOX = re.compile(r'<(\d\.\d+) (\d\.\d+) (\d\.\d+) (\d\.\d+)>')

    def format_boxes(self, boxes):
        return ''.join('<' + ' '.join(f'{v:.3f}' for v in box) + '>' for box in boxes)

    def extract(self, text):
        return [[[float(v) for v in m.groups()]] for m in self._BOX.finditer(text)]


def test_injected_box_formatter_parses_both_sides():
    formatter = AngleBoxFormatter()
    ref = 'Answer: <0.000 0.000 0.500 0.500> .'
    preds = ['Answer: <0.000 0.000 0.500 0.500> .',   # IoU 1
             'Answer: <0.000 0.000 0.400 0.500> .',   # IoU 0.2/0.25 = 0.8
             'Answer: <0.250 0.000 0.750 0.500> .',   # IoU 0.125/0.375 = 1/3
             'Answer: [0.000,0.000,0.500,0.500] .']   # the plain grammar is not this model's: a parse failure
    metric = METRICS.build(dict(type='RECComputeMetrics', box_formatter=formatter))
    assert metric.formatter is formatter
    metrics, verdicts = metric(preds, [ref] * 4)
    assert metrics == {'accuracy': 0.5, 'miou': pytest.approx((1 + 0.8 + 1 / 3) / 4), 'parse_failures': 1,
                       'total': 4}
    assert [v['correct'] for v in verdicts] == [True, True, False, False]
    # The default formatter reads none of these boxes: every prediction would be a parse failure ...
    plain_refs = ['Answer: [0.000,0.000,0.500,0.500] .'] * 3
    metrics, _ = RECComputeMetrics()(preds[:3], plain_refs)
    assert metrics['parse_failures'] == 3 and metrics['accuracy'] == 0.0
    # ... and the model's own references cannot be read at all.
    with pytest.raises(ValueError, match='exactly one box'):
        RECComputeMetrics()(preds, [ref] * 4)


def test_formatter_and_box_formatter_are_exclusive():
    with pytest.raises(ValueError, match='not both'):
        RECComputeMetrics(formatter=dict(type='PlainBoxFormatter'), box_formatter=PlainBoxFormatter())
    with pytest.raises(TypeError, match='built formatter object'):
        RECComputeMetrics(box_formatter=dict(type='PlainBoxFormatter'))
    with pytest.raises(TypeError, match='has no extract'):
        RECComputeMetrics(box_formatter=object())
