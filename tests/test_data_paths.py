"""Data roots and missing paths: one `data_args.roots` key moves a dataset; errors name the key to set."""
import json

import numpy as np
import pytest
from transformers import Seq2SeqTrainingArguments
from transformers.trainer_utils import PredictionOutput

from mllm.config import ConfigError, prepare_args
from mllm.dataset.builder import build_raw_dataset, expand_roots, prepare_data
from mllm.engine import MllmTrainer


def test_expand_roots_replaces_every_placeholder_and_reports_which():
    cfg, used = expand_roots({'type': 'X', 'filename': '{annotations}/a.jsonl', 'image_folder': '{coco}/train2014',
                              'seed': 3, 'template_file': 'REC.json'},
                             {'annotations': '/ann', 'coco': '/data/coco'}, 'data_args.train')
    assert cfg == {'type': 'X', 'filename': '/ann/a.jsonl', 'image_folder': '/data/coco/train2014', 'seed': 3,
                   'template_file': 'REC.json'}
    assert used == {'filename': 'annotations', 'image_folder': 'coco'}


def test_unknown_root_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        expand_roots({'image_folder': '{cocoo}/train2014'}, {'coco': '/c', 'gqa': '/g'}, 'data_args.train')
    message = str(info.value)
    assert 'data_args.train.image_folder' in message and "'{cocoo}'" in message and "Did you mean 'coco'" in message


def test_missing_folder_names_the_root_and_the_key(rec_data):
    cfg = dict(type='RECDataset', filename=rec_data['jsonl'], image_folder='{coco}/train2014')
    with pytest.raises(ConfigError) as info:
        build_raw_dataset(cfg, {'coco': '/nowhere/coco'}, 'data_args.multitest.refcoco_val.cfg')
    message = str(info.value)
    assert 'data_args.multitest.refcoco_val.cfg.image_folder' in message
    assert '/nowhere/coco/train2014' in message and 'data_args.roots.coco=' in message


def test_missing_file_without_root_names_the_key(rec_data):
    cfg = dict(type='RECDataset', filename=str(rec_data['root'] / 'absent.jsonl'),
               image_folder=rec_data['image_folder'])
    with pytest.raises(ConfigError) as info:
        build_raw_dataset(cfg, {}, 'data_args.train')
    message = str(info.value)
    assert 'data_args.train.filename' in message and 'absent.jsonl' in message
    assert '--cfg-options data_args.train.filename=' in message and 'roots' not in message


def test_one_root_override_moves_every_dataset(rec_data, tmp_path, monkeypatch, family):
    """A config on the shipped _base_ files, pointed at local data with two root keys only."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'ann').mkdir()
    (tmp_path / 'ann' / 'REC_ref3_train.jsonl').write_text(open(rec_data['jsonl']).read())
    for split in ('val', 'testA'):
        (tmp_path / 'ann' / f'REC_refcoco_unc_{split}.jsonl').write_text(open(rec_data['jsonl']).read())
    coco = tmp_path / 'coco'
    coco.mkdir()
    (coco / 'train2014').symlink_to(rec_data['image_folder'])
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / 'exp.py').write_text(
        f"_base_ = ['{repo}/config/_base_/dataset/data_args.py', '{repo}/config/_base_/dataset/rec_reg.py']\n"
        "data_args = dict(train={{_base_.REC_REG_TRAIN.rec_ref3_coco}},\n"
        "                 multitest=dict(val=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_val}}),\n"
        "                                testA=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_testA}})))\n"
        "model_args = dict(model_name_or_path='tiny')\n"
        "training_args = dict(use_cpu=True)\n")
    _, model_args, data_args, _ = prepare_args([
        'exp.py', '--cfg-options', f'data_args.roots.coco={coco}', f'data_args.roots.annotations={tmp_path}/ann'])
    data = prepare_data(data_args, model_args, family)
    assert len(data['train']) == 3
    assert {name: len(entry['dataset']) for name, entry in data['multitest'].items()} == {'val': 3, 'testA': 3}
    assert data['train'].dataset.image_folder == f'{coco}/train2014'
    # without the override the error names the root to set
    _, model_args, data_args, _ = prepare_args(
        ['exp.py', '--cfg-options', f'data_args.roots.annotations={tmp_path}/ann'])
    with pytest.raises(ConfigError, match=r'data_args\.train\.image_folder.*data_args\.roots\.coco='):
        prepare_data(data_args, model_args, family)


class ScoreWithMetas:
    """A metric that needs more than the reference text: counts a hit when pred is among meta answers."""

    def __call__(self, predictions, references, metas=None):
        verdicts = [{'correct': pred in meta['answers']} for pred, meta in zip(predictions, metas)]
        return {'accuracy': sum(v['correct'] for v in verdicts) / len(verdicts)}, verdicts


class MetaDataset(list):
    def meta(self, index):
        return {'answers': [['two', '2'], ['red']][index], 'question_id': 100 + index}


def test_trainer_passes_metas_to_the_metric_and_writes_them(tiny, tmp_path, monkeypatch):
    model, pre = tiny
    tok = pre['text']
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = MllmTrainer(model=model, args=args, processing_class=tok)
    preds = [tok('2', add_special_tokens=False)['input_ids'], tok('blue', add_special_tokens=False)['input_ids']]
    width = max(map(len, preds))
    pad = [p + [-100] * (width - len(p)) for p in preds]
    rows = [[i, 0, *p] for i, p in enumerate(pad)]  # (sample index, skipped flag, generated tokens)
    monkeypatch.setattr(trainer, 'predict', lambda dataset, metric_key_prefix: PredictionOutput(
        predictions=np.array(rows), label_ids=np.array(pad), metrics={}))
    metrics = trainer.predict_and_score(MetaDataset([0, 1]), ScoreWithMetas(), prefix='probe')
    assert metrics['probe_accuracy'] == 0.5
    lines = [json.loads(x) for x in open(tmp_path / 'probe_extra_prediction.jsonl')]
    assert [(x['pred'], x['correct'], x['meta']['question_id']) for x in lines] == [('2', True, 100),
                                                                                      ('blue', False, 101)]


class ClashingMetric:
    def __call__(self, predictions, references, metas=None):
        return {'accuracy': 0.0}, [{'pred': None, 'correct': False} for _ in predictions]


def test_a_verdict_may_not_hide_the_prediction_text(tiny, tmp_path, monkeypatch):
    model, pre = tiny
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = MllmTrainer(model=model, args=args, processing_class=pre['text'])
    ids = np.array([pre['text']('2', add_special_tokens=False)['input_ids']])
    monkeypatch.setattr(trainer, 'predict', lambda dataset, metric_key_prefix: PredictionOutput(
        predictions=np.array([[0, 0, *ids[0]]]), label_ids=ids, metrics={}))
    with pytest.raises(ValueError, match=r"ClashingMetric's verdicts use the reserved key\(s\) \['pred'\]"):
        trainer.predict_and_score([0], ClashingMetric(), prefix='probe')
    assert not (tmp_path / 'probe_extra_prediction.jsonl').exists()


def dataset_classes():
    """Every registered dataset read from one annotation file and an image folder (AnnotationDataset);
    the multi-image datasets (MIMIC-IT, ISEKAI, LCL episodes) have their own missing-path tests."""
    import mllm.dataset.builder  # noqa: F401  (registers every dataset)
    from mllm.dataset.root import DATASETS
    from mllm.dataset.single_image_dataset.base import AnnotationDataset
    return sorted((name, cls) for name, cls in DATASETS.module_dict.items() if issubclass(cls, AnnotationDataset))


def test_every_registered_dataset_is_covered_by_a_missing_path_test():
    from mllm.dataset.root import DATASETS
    own_tests = {'MIMICITDataset', 'ISEKAIDataset', 'LCLEpisodeDataset', 'LCLTestEpisodeDataset',
                 'RecallEpisodeDataset'}  # test_ds_*.py
    assert {name for name, _ in dataset_classes()} | own_tests == set(DATASETS.module_dict)


@pytest.mark.parametrize('name, cls', dataset_classes(), ids=[n for n, _ in dataset_classes()])
def test_every_dataset_names_its_missing_file_and_folder(name, cls, tmp_path):
    from mllm.dataset.single_image_dataset.base import MissingDataPathError

    with pytest.raises(MissingDataPathError) as info:
        cls(filename=str(tmp_path / 'absent.jsonl'), image_folder=str(tmp_path))
    assert info.value.key == 'filename' and info.value.path.endswith('absent.jsonl')
    present = tmp_path / 'present.jsonl'
    present.write_text('')
    with pytest.raises(MissingDataPathError) as info:
        cls(filename=str(present), image_folder=str(tmp_path / 'no_images'))
    assert info.value.key == 'image_folder' and info.value.kind == 'folder'


def test_scienceqa_missing_pid_splits_names_the_root(tmp_path):
    (tmp_path / 'problems.json').write_text('{}')
    cfg = dict(type='ScienceQADataset', filename='{scienceqa}/problems.json', image_folder='{scienceqa}',
               split='minival', pid_splits='{scienceqa}/pid_splits.json')
    with pytest.raises(ConfigError, match=r'data_args\.test\.pid_splits: file not found: .*pid_splits\.json.*'
                                          r'data_args\.roots\.scienceqa='):
        build_raw_dataset(cfg, {'scienceqa': str(tmp_path)}, 'data_args.test')


@pytest.mark.parametrize('split', ['train', 'multitest.shapes_test.cfg'])
def test_missing_dataset_file_fails_before_the_model_is_built(rec_data, tmp_path, monkeypatch, split):
    import mllm.pipeline.finetune as finetune

    def no_model(model_args):
        raise AssertionError('the model builder was called before the data paths were checked')

    monkeypatch.setattr(finetune, 'build_model', no_model)
    config = 'config/demo/shapes_rec_tiny_llava.py'
    existing = [f"data_args.{key}.{field}={rec_data[value]}"
                for key in ('train', 'validation', 'multitest.shapes_test.cfg')
                for field, value in (('filename', 'jsonl'), ('image_folder', 'image_folder'))]
    with pytest.raises(ConfigError, match=rf'data_args\.{split}\.filename: file not found: .*absent\.jsonl'):
        finetune.main([config, '--cfg-options', 'data_args.prepare=[]', *existing,
                       f'data_args.{split}.filename={tmp_path}/absent.jsonl', '--output_dir', str(tmp_path / 'out')])


def test_unknown_data_args_key_and_policy_are_errors(tmp_path):
    from mmengine.config import ConfigDict

    from mllm.dataset.builder import build_raw_data

    with pytest.raises(ConfigError, match=r"data_args: unknown key 'on_bad_samples'. Did you mean 'on_bad_sample'"):
        build_raw_data(ConfigDict(on_bad_samples='skip'))
    with pytest.raises(ConfigError, match=r"data_args.on_bad_sample: 'drop' is not one of"):
        build_raw_data(ConfigDict(on_bad_sample='drop'))


def test_metrics_parse_with_the_models_box_formatter(rec_data):
    """prepare_data hands the model's formatter (model_args.target_processor) to every metric that parses boxes."""
    from mmengine.config import ConfigDict

    from mllm.dataset.process_function.box_formatter import PlainBoxFormatter

    class Angled(PlainBoxFormatter):  # another grammar: <x0 y0 x1 y1>
        def format_boxes(self, boxes):
            return ';'.join('<' + ' '.join(self._num(v) for v in b) + '>' for b in boxes)

        def extract(self, text):
            import re
            pattern = r'<([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)>'
            return [[[float(v) for v in m.groups()]] for m in re.finditer(pattern, text)]

    formatter = Angled()
    rec = dict(type='RECDataset', filename=rec_data['jsonl'], image_folder=rec_data['image_folder'],
               template_file='REC.json')
    data_args = ConfigDict(test=rec, compute_metric=dict(type='RECComputeMetrics'),
                           multitest=dict(a=dict(cfg=rec, compute_metric=dict(type='PointingComputeMetrics'))))
    from mllm.models.builder import build_model
    _, family = build_model(ConfigDict(model_name_or_path='tiny'))
    family.box_formatter = formatter
    out = prepare_data(data_args, ConfigDict(), family)
    for metric in (out['compute_metric'], out['multitest']['a']['compute_metric']):
        assert metric.formatter is formatter
    scores, _ = out['compute_metric'](['<0.100 0.100 0.500 0.500>'], ['<0.100 0.100 0.500 0.500>'])
    assert scores['accuracy'] == 1.0 and scores['parse_failures'] == 0
