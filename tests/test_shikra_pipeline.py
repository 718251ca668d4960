"""The Shikra mixture end to end, as a researcher with the official releases on disk would run it.

A miniature copy of every official release the mixture reads (refer pickles + instances.json, Visual Genome
regions, Flickr30K Entities, Visual7W pointing, GQA questions + scene graphs, VQAv2 questions + annotations,
Shikra's PointQA JSONL, llava_instruct_150k.json) and its images is written in the official layout; the
tools/prepare_data converters fill {annotations}; config/shikra_mixture_llava_v1_7b.py is then run unchanged
except for its roots (--cfg-options) and a tiny CPU model / 3-step schedule in an inheriting experiment file.
The run must train on every member of the interleaved mixture and write predictions + scores for every
multitest entry. A random tiny model scores about 0, so structure and totals are checked, not accuracy.
"""
import copy
import json
import math
import pickle
from functools import partial
from pathlib import Path

import pytest
from mmengine.config import Config
from PIL import Image

from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.utils.mixture import InterleaveDataset
from mllm.dataset.utils.transform import Expand2square, norm_box_xyxy
from mllm.pipeline.finetune import collect_skipped, main
from tests import helpers
from tests import test_ds_gpt4gen as gpt4gen_fx
from tests import test_prep_flickr30k_entities as flickr_fx
from tests import test_prep_gqa as gqa_fx
from tests import test_prep_refcoco as refcoco_fx
from tests import test_prep_visual7w as v7w_fx
from tests import test_prep_visual_genome as vg_fx
from tests import test_prep_vqav2 as vqa_fx
from tests.helpers import read_jsonl, write_json, write_jsonl
from tools.prepare_data import flickr30k_entities, gqa, refcoco, visual7w, visual_genome, vqav2

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config' / 'shikra_mixture_llava_v1_7b.py'

# The leaf dataset type of each member of the mixture's train InterleaveDataset, in config order.
TRAIN_MEMBERS = ['Flickr30kDataset', 'RECDataset', 'REGDataset', 'GCDataset', 'PointQALocalDataset',
                 'PointQATwiceDataset', 'V7WPointingDataset', 'GQADataset', 'VQAv2Dataset',
                 ('LLaVAInstructDataset', 'GPT4GenDataset', 'GPT4GenDataset')]
# multitest entry -> (its JSONL under {annotations}, the meta keys its dataset provides for the metric)
MULTITEST = {
    'rec_refcoco_val': ('REC_refcoco_unc_val.jsonl', {'expression', 'bbox'}),
    'gqa_testdev': ('GQA_testdev_balanced.jsonl', {'question_id', 'answer'}),
    'vqav2_val': ('vqav2_val2014.jsonl', {'question_id', 'answers'}),
    'v7w_test': ('v7w_pointing_test.jsonl', {'gt_box', 'candidates', 'answer_index'}),
}

MODEL_BASE = REPO / 'config' / '_base_' / 'model' / 'llava_tiny.py'
TRAIN_BASE = REPO / 'config' / '_base_' / 'train' / 'cpu_tiny.py'  # default.py with the CPU settings


def experiment_config() -> str:
    """The experiment file: the real mixture, with the tiny offline LLaVA of llava_tiny.py and the training
    arguments of cpu_tiny.py in place of its own (read from those files; `_delete_` drops every 7B/GPU key),
    changed only where this test needs it."""
    model_args = Config.fromfile(str(MODEL_BASE)).model_args.to_dict()
    model_args['conv_args']['max_length'] = 1024  # room for the longest mixture sample
    training_args = Config.fromfile(str(TRAIN_BASE)).training_args.to_dict()
    # 3 small steps, each loss logged (the run's checks); no checkpoints (cpu_tiny.py already says so).
    training_args.update(max_steps=3, per_device_train_batch_size=2, logging_steps=1)
    return (f'_base_ = [{str(CONFIG)!r}]\n'
            'data_args = dict(train=dict(num_samples=200))\n'  # the fixture's epoch: every member drawn
            f'model_args = {dict(_delete_=True, **model_args)!r}\n'
            f'training_args = {dict(_delete_=True, **training_args)!r}\n')


# Fixture images of this test: lossless, under each release's own file name.
save_png = partial(helpers.save_png, colour=(90, 140, 30))


# -- the official releases -------------------------------------------------------------------------
def write_refer(release: Path, coco: Path) -> Path:
    """refcoco/ refcoco+/ refcocog/ with refs(<split_by>).p + instances.json; images in coco/train2014."""
    refs = copy.deepcopy(refcoco_fx.REFS)
    # A second refcoco val sentence, so the REC multitest has more than one sample.
    refs[('refcoco', 'unc')][3]['sentences'].append(refcoco_fx.sentence(5, 'the chair on the right'))
    refs[('refcoco', 'unc')][3]['sent_ids'].append(5)
    root = release / 'refer'
    for (dataset, split_by), items in refs.items():
        (root / dataset).mkdir(parents=True)
        with open(root / dataset / f'refs({split_by}).p', 'wb') as f:
            pickle.dump(items, f, protocol=2)
        write_json(root / dataset / 'instances.json', refcoco_fx.instances())
    for _, name, w, h in refcoco_fx.IMAGES:
        save_png(coco / 'train2014' / name, (w, h))
    return root


def write_visual_genome(release: Path, vg: Path) -> tuple[str, str]:
    for entry in vg_fx.IMAGE_DATA:
        save_png(vg / visual_genome.image_path_from_url(entry['url']), (entry['width'], entry['height']))
    return (write_json(release / 'vg' / 'region_descriptions.json', vg_fx.REGIONS),
            write_json(release / 'vg' / 'image_data.json', vg_fx.IMAGE_DATA))


def write_flickr30k_entities(release: Path, flickr: Path) -> Path:
    root = release / 'flickr30k_entities'
    for image_id, xml, text in (('1000', flickr_fx.XML_1000, flickr_fx.SENTENCES_1000),
                                ('2000', flickr_fx.XML_2000, flickr_fx.SENTENCES_2000)):
        (root / 'Annotations').mkdir(parents=True, exist_ok=True)
        (root / 'Sentences').mkdir(exist_ok=True)
        (root / 'Annotations' / f'{image_id}.xml').write_text(xml, encoding='utf-8')
        (root / 'Sentences' / f'{image_id}.txt').write_text(text, encoding='utf-8')
    (root / 'train.txt').write_text('1000\n')
    (root / 'val.txt').write_text('2000\n')
    (root / 'test.txt').write_text('2000\n')
    for image_id, size in flickr_fx.SIZES.items():
        save_png(flickr / f'{image_id}.jpg', size)
    return root


def write_visual7w(release: Path, v7w: Path) -> str:
    pointing = copy.deepcopy(v7w_fx.POINTING)
    # A second test question, so the V7W multitest has more than one sample.
    pointing['images'][2]['qa_pairs'].append({'qa_id': 91, 'image_id': 9, 'question': 'Which object holds flowers?',
                                              'type': 'which', 'answer': 304, 'multiple_choices': [301, 302, 303]})
    for name, _, size in v7w_fx.IMAGES.values():
        save_png(v7w / name, size)
    return write_json(release / 'v7w' / 'dataset_v7w_pointing.json', pointing)


def write_gqa(release: Path, gqa_root: Path) -> dict:
    # testdev has its own question ids and no scene graphs; the images are in the same images/ folder.
    testdev = {f'20{qid}': dict(question) for qid, question in list(gqa_fx.QUESTIONS.items())[:3]}
    for image_id, scene in gqa_fx.SCENE_GRAPHS.items():
        save_png(gqa_root / 'images' / f'{image_id}.jpg', (scene['width'], scene['height']))
    return {'train': write_json(release / 'gqa' / 'questions1.2' / 'train_balanced_questions.json', gqa_fx.QUESTIONS),
            'scenes': write_json(release / 'gqa' / 'sceneGraphs' / 'train_sceneGraphs.json', gqa_fx.SCENE_GRAPHS),
            'testdev': write_json(release / 'gqa' / 'questions1.2' / 'testdev_balanced_questions.json', testdev)}


# VQAv2 train on the COCO train2014 images of the refer fixture. Six questions: the mixture keeps a tenth
# of VQAv2 (SubsetDataset portion=0.1), and round(0.1 * n) is 0 below n = 6.
VQA_TRAIN = [(9, 'What animal is on the left?', ['dog'] * 8 + ['puppy', 'dogs'], 'other'),
             (9, 'Is the man wearing red?', ['yes'] * 10, 'yes/no'),
             (25, 'How many people are there?', ['1'] * 9 + ['one'], 'number'),
             (25, 'Où est la personne ?', ['en haut'] * 6 + ['top'] * 4, 'other'),
             (30, 'What is this?', ['chair'] * 10, 'other'),
             (30, 'Is the chair wooden?', ['yes'] * 7 + ['no'] * 3, 'yes/no')]


def write_vqav2(release: Path, coco: Path) -> Path:
    root = release / 'vqav2'
    questions = [{'image_id': image_id, 'question': q, 'question_id': image_id * 1000 + k}
                 for k, (image_id, q, _, _) in enumerate(VQA_TRAIN)]
    annotations = [{'question_type': 'what', 'multiple_choice_answer': texts[0], 'answer_type': answer_type,
                    'image_id': image_id, 'question_id': image_id * 1000 + k, 'answers': vqa_fx.answers(texts)}
                   for k, (image_id, _, texts, answer_type) in enumerate(VQA_TRAIN)]
    for subtype, qs, anns in (('train2014', questions, annotations),
                              ('val2014', vqa_fx.VAL_QUESTIONS, vqa_fx.VAL_ANNOTATIONS)):
        write_json(root / f'v2_OpenEnded_mscoco_{subtype}_questions.json', vqa_fx.questions_json(subtype, qs))
        write_json(root / f'v2_mscoco_{subtype}_annotations.json',
                   {'info': vqa_fx.INFO, 'license': vqa_fx.LICENSE, 'data_subtype': subtype, 'annotations': anns})
    save_png(coco / 'val2014' / 'COCO_val2014_000000262148.jpg', (120, 80))
    save_png(coco / 'val2014' / 'COCO_val2014_000000393225.jpg', (60, 90))
    return root


def write_point_qa(annotations: Path) -> None:
    """Shikra's own pointQA_{local,twice}_train.jsonl (no converter: the release is this JSONL), on VG images."""
    local = [{'file_path': 'VG_100K_2/1.jpg', 'question': 'What colour is this?', 'answer': 'green',
              'bbox': [10, 5, 30, 35], 'point': [20, 20]},
             {'file_path': 'VG_100K/10.jpg', 'question': 'What is this made of?', 'answer': 'café',
              'bbox': [0, 0, 17, 50]},  # touches the left, top and bottom border; no point: the box centre
             {'file_path': 'VG_100K_2/1.jpg', 'question': 'What is this?', 'answer': 'shade',
              'bbox': [50, 30, 64, 48], 'point': [57, 40]}]
    twice = [dict(record, obj_question='How many clocks like this are there?',
                  super_question='How many objects like this are there?',
                  general_question='How many of these are there?', answer=k + 1) for k, record in enumerate(local)]
    write_jsonl(annotations / 'pointQA_local_train.jsonl', local)
    write_jsonl(annotations / 'pointQA_twice_train.jsonl', twice)


def write_llava_instruct(annotations: Path, coco: Path) -> None:
    """llava_instruct_150k.json (one JSON array; images are COCO train2017 file names). Six samples: the
    mixture keeps a tenth of it (SubsetDataset portion=0.1)."""
    samples = []
    for k, size in enumerate([(100, 60), (40, 70), (64, 48), (30, 45), (90, 50), (50, 80)]):
        name = f'{33471 + k:012d}.jpg'
        save_png(coco / 'train2017' / name, size, colour=(20 * k, 90, 200))
        first = 'What is in the picture?' if k % 2 else 'What colour is the image?'
        turns = [{'from': 'human', 'value': f'{first}\n<image>' if k % 2 else f'<image>\n{first}'},
                 {'from': 'gpt', 'value': 'The image is mostly blue with a red dot in the top left corner.'}]
        if k == 0:
            turns += [{'from': 'human', 'value': 'Is there anything else?'},
                      {'from': 'gpt', 'value': 'No, only the dot — « rien » else.'}]
        samples.append({'id': name[:-4], 'image': name, 'conversations': turns})
    write_json(annotations / 'llava_instruct_150k.json', samples)


def write_gpt4gen(annotations: Path, flickr: Path) -> None:
    """Shikra's GPT4GEN_BoxCoT_train.jsonl and GPT4GEN_RD_BoxCoT_train.jsonl (no converter: the release is this
    JSONL) of test_ds_gpt4gen, on Flickr30K images."""
    for name, size in gpt4gen_fx.SIZES.items():
        save_png(flickr / name, size)
    write_jsonl(annotations / 'GPT4GEN_BoxCoT_train.jsonl', gpt4gen_fx.BOXCOT)
    write_jsonl(annotations / 'GPT4GEN_RD_BoxCoT_train.jsonl', gpt4gen_fx.RD)


def leaf(dataset):
    """The raw dataset under a mixture member (through SubsetDataset / HoldoutSplit wrappers); a tuple of
    them under a ConcatDataset."""
    while not isinstance(dataset, SingleImageConvDataset):
        if len(dataset.datasets) > 1:
            return tuple(leaf(d) for d in dataset.datasets)
        dataset = dataset.datasets[0]
    return dataset.dataset


def type_names(member):
    return tuple(type_names(m) for m in member) if isinstance(member, tuple) else type(member).__name__


def annotation_files(cfg) -> set[str]:
    """Every '{annotations}/<name>' file the data_args of a config reads (train and multitest)."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.startswith('{annotations}/'):
            found.add(value[len('{annotations}/'):])

    walk(cfg.data_args.train.to_dict())
    walk(cfg.data_args.multitest.to_dict())
    return found


# -- the run ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('shikra')
    release, ann = tmp / 'release', tmp / 'annotations'
    roots = {'annotations': ann, 'coco': tmp / 'coco', 'vg': tmp / 'vg', 'flickr30k': tmp / 'flickr30k',
             'gqa': tmp / 'gqa', 'v7w': tmp / 'v7w'}

    # 1. the official releases
    refer_root = write_refer(release, roots['coco'])
    regions, image_data = write_visual_genome(release, roots['vg'])
    flickr_root = write_flickr30k_entities(release, roots['flickr30k'])
    pointing = write_visual7w(release, roots['v7w'])
    gqa_files = write_gqa(release, roots['gqa'])
    vqa_root = write_vqav2(release, roots['coco'])
    ann.mkdir()
    write_point_qa(ann)
    write_llava_instruct(ann, roots['coco'])
    write_gpt4gen(ann, roots['flickr30k'])

    # 2. the converters, with the commands of their docstrings
    refcoco.main(['--data-root', str(refer_root), '--output-dir', str(ann), '--ref3'])
    visual_genome.main(['--region-descriptions', regions, '--image-data', image_data,
                        '--output', str(ann / visual_genome.OUTPUT_FILE)])
    flickr30k_entities.main(['--root', str(flickr_root), '--out-dir', str(ann)])
    visual7w.main(['--pointing', pointing, '--image-folder', str(roots['v7w']), '--out-dir', str(ann)])
    assert gqa.main(['--questions', gqa_files['train'], '--scene-graphs', gqa_files['scenes'],
                     '--output', str(ann / 'GQA_train_balanced.jsonl')]) == 0
    assert gqa.main(['--questions', gqa_files['testdev'], '--output', str(ann / 'GQA_testdev_balanced.jsonl')]) == 0
    assert vqav2.main(['--vqa-root', str(vqa_root), '--out-dir', str(ann), '--splits', 'train', 'val']) == 0

    # 3. an experiment file: the real mixture, a tiny CPU model, 3 steps
    experiment = tmp / 'shikra_mixture_tiny.py'
    experiment.write_text(experiment_config())
    cfg = Config.fromfile(str(experiment))
    expected_files, multitest_names = annotation_files(cfg), set(cfg.data_args.multitest)

    # 4. train + multitest, pointing the config at the data with roots only
    out = tmp / 'out'
    trainer = main([str(experiment), '--cfg-options', *[f'data_args.roots.{k}={v}' for k, v in roots.items()],
                    'data_args.gen_kwargs.max_new_tokens=8', '--output_dir', str(out)])
    return {'trainer': trainer, 'out': out, 'ann': ann, 'expected_files': expected_files,
            'multitest_names': multitest_names}


def test_converters_write_every_file_the_config_reads(run):
    assert run['multitest_names'] == set(MULTITEST)
    assert run['expected_files'] == {
        'CWB_flickr30k_train.jsonl', 'REC_ref3_train.jsonl', 'GC_genome_train.jsonl', 'pointQA_local_train.jsonl',
        'pointQA_twice_train.jsonl', 'v7w_pointing_train.jsonl', 'GQA_train_balanced.jsonl', 'vqav2_train2014.jsonl',
        'llava_instruct_150k.json', 'REC_refcoco_unc_val.jsonl', 'GQA_testdev_balanced.jsonl',
        'vqav2_val2014.jsonl', 'v7w_pointing_test.jsonl', 'GPT4GEN_BoxCoT_train.jsonl',
        'GPT4GEN_RD_BoxCoT_train.jsonl'}
    for name in sorted(run['expected_files']):
        assert (run['ann'] / name).is_file(), f'{name}: expected by the config, not written'


def test_training_ran_on_every_member(run):
    trainer, out = run['trainer'], run['out']
    assert trainer.state.global_step == 3
    losses = [e['loss'] for e in trainer.state.log_history if 'loss' in e]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    results = json.loads((out / 'train_results.json').read_text())
    assert math.isfinite(results['train_loss']) and results['train_skipped_samples'] == 0
    state = json.loads((out / 'trainer_state.json').read_text())
    assert state['global_step'] == 3

    mixture = trainer.train_dataset
    assert isinstance(mixture, InterleaveDataset)
    assert [type_names(leaf(m)) for m in mixture.datasets] == TRAIN_MEMBERS
    assert all(len(m) > 0 for m in mixture.datasets), [len(m) for m in mixture.datasets]
    assert {k for k, _ in mixture.table} == set(range(len(TRAIN_MEMBERS)))
    # Every position of the mixture renders into model inputs with answer tokens; nothing is skipped.
    for i in range(len(mixture)):
        sample = mixture[i]
        assert (sample['labels'] >= 0).any(), f'mixture[{i}] ({mixture.table[i]}) has no answer tokens'
    assert collect_skipped(mixture) == []


@pytest.mark.parametrize('name', sorted(MULTITEST))
def test_multitest_predictions_and_scores(run, name):
    jsonl, meta_keys = MULTITEST[name]
    references = read_jsonl(run['ann'] / jsonl)
    rows = read_jsonl(run['out'] / f'multitest_{name}_extra_prediction.jsonl')
    assert [r['id'] for r in rows] == list(range(len(references)))
    for row in rows:
        assert {'target', 'correct', 'parse_failed'} <= set(row), row
        assert isinstance(row['correct'], bool) and row['target']
        assert meta_keys <= set(row.get('meta', {})), row
    results = json.loads((run['out'] / f'multitest_{name}_results.json').read_text())
    assert results[f'multitest_{name}_total'] == len(references)
    assert 0.0 <= results[f'multitest_{name}_accuracy'] <= 1.0
    assert results[f'multitest_{name}_accuracy'] == pytest.approx(
        sum(r['accuracy'] if name == 'vqav2_val' else r['correct'] for r in rows) / len(rows))

    # The references are the converted annotations, carried through the dataset and the formatter.
    if name == 'rec_refcoco_val':
        for row, ref in zip(rows, references, strict=True):
            image, target = Expand2square()(Image.new('RGB', (ref['width'], ref['height'])), {'boxes': [ref['bbox']]})
            side = image.size[0]
            assert row['target_boxes'][0][0] == pytest.approx(norm_box_xyxy(target['boxes'][0], side, side),
                                                              abs=5.001e-4)
            assert row['meta']['expression'] == ref['expression']
    elif name == 'gqa_testdev':
        assert [row['target_answer'] for row in rows] == [ref['answer'] for ref in references]
    elif name == 'vqav2_val':
        assert [row['meta']['answers'] for row in rows] == [
            [a['answer'] for a in ref['annotation']['answers']] for ref in references]
        assert [row['target'] for row in rows] == [ref['annotation']['multiple_choice_answer'] for ref in references]
    elif name == 'v7w_test':
        assert [row['meta']['answer_index'] for row in rows] == [ref['answer_index'] for ref in references]


def test_every_prediction_line_keeps_the_generated_text(run):
    for name in sorted(MULTITEST):
        for row in read_jsonl(run['out'] / f'multitest_{name}_extra_prediction.jsonl'):
            assert isinstance(row['pred'], str), f'{name}[{row["id"]}]: pred is {row["pred"]!r}, not the text'
