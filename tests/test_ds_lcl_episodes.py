"""LCLEpisodeDataset / LCLTestEpisodeDataset on fixtures in the LCL class-pairs layouts (JSON Lines; training:
class_id, class_name, samples, neighbors of [class_id, class_name, image_path]; test: class_id, class_name,
context_samples, test_samples), ImageNet-style relative paths, string class ids. Distributions are checked
over many seeded episodes against probabilities worked out by hand; bounds are about 5 standard deviations."""
import math
from collections import Counter

import pytest
from PIL import Image

from mllm.dataset.builder import build_raw_dataset  # noqa: F401  (registers every dataset)
from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset, LCLTestEpisodeDataset
from mllm.dataset.root import DATASETS
from mllm.dataset.utils.io import DataFileError
from tests.helpers import write_jsonl

IDS = ['n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475']
NAMES = ['tench', 'goldfish', 'great white shark', 'tiger shark', 'hammerhead']
PER_CLASS = 17  # the largest shot (16) + the query


def rel(c, j):
    return f'train/{IDS[c]}/{IDS[c]}_{j}.JPEG'


def colour(c, j):
    return (40 * c + 10, 12 * j + 5, 99)


def train_records():
    # the neighbours of class c: the next three classes, most similar first
    return [{'class_id': IDS[c], 'class_name': NAMES[c], 'samples': [rel(c, j) for j in range(PER_CLASS)],
             'neighbors': [[IDS[(c + d) % 5], NAMES[(c + d) % 5], rel((c + d) % 5, 0)] for d in (1, 2, 3)]}
            for c in range(5)]


@pytest.fixture
def root(tmp_path):
    for c in range(5):
        for j in range(PER_CLASS):
            path = tmp_path / 'imagenet' / rel(c, j)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new('RGB', (4, 4), colour(c, j)).save(path, format='PNG')  # PNG bytes, ImageNet's name
    return str(tmp_path / 'imagenet')


@pytest.fixture
def train_file(tmp_path):
    return write_jsonl(tmp_path / 'train900_pairs.jsonl', train_records())


def plan(ds, i):
    e = ds.episode(i)
    return e.support, e.query, e.answer, e.others, e.shot


def test_episodes_are_a_function_of_seed_epoch_index(train_file, root):
    a = LCLEpisodeDataset(train_file, root, policy='2way_random', seed=3, num_episodes=50)
    b = LCLEpisodeDataset(train_file, root, policy='2way_random', seed=3, num_episodes=50)
    assert [plan(a, i) for i in reversed(range(50))] == [plan(b, i) for i in reversed(range(50))]
    epoch0 = [plan(a, i) for i in range(50)]
    a.set_epoch(1)
    assert [plan(a, i) for i in range(50)] != epoch0
    a.set_epoch(0)
    assert [plan(a, i) for i in range(50)] == epoch0
    c = LCLEpisodeDataset(train_file, root, policy='2way_random', seed=4, num_episodes=50)
    assert [plan(c, i) for i in range(50)] != epoch0
    assert len(a) == 50 and len(LCLEpisodeDataset(train_file, root)) == 5


def test_item_format_two_shot(train_file, root):
    ds = LCLEpisodeDataset(train_file, root, policy='2way', shot=2, seed=0)
    by_colour = {colour(c, j): rel(c, j) for c in range(5) for j in range(PER_CLASS)}
    for i in range(5):
        item, e = ds[i], ds.episode(i)
        shown = [by_colour[im.getpixel((0, 0))] for im in item['image']]
        assert [f'{root}/{p}' for p in shown] == [p for p, _ in e.support] + [e.query]
        assert len(set(shown)) == 5  # the query is never a support image
        conv = item['conversations']
        for k, (path, name) in enumerate(e.support):
            assert conv[2 * k]['value'] == '<image>What is shown in this image?' and conv[2 * k]['in_context']
            assert conv[2 * k + 1]['value'] == f'There is "{name}" in the image.' and conv[2 * k + 1]['in_context']
            assert NAMES[IDS.index(path.split('/')[-2])] == name
        assert conv[-2] == {'from': 'human', 'value': '<image>Going by the examples above, what is shown in this '
                            'image?', 'boxes_seq': None, 'points_seq': None}
        assert conv[-1]['value'] == f'There is "{e.answer}" in the image.' and 'in_context' not in conv[-1]
        assert NAMES[IDS.index(e.query.split('/')[-2])] == e.answer
        meta = ds.meta(i)
        assert meta['positive'] == e.answer and meta['negatives'] == e.others and meta['shot'] == 2
        assert {meta['positive'], meta['negative']} == {NAMES[i], NAMES[IDS.index(meta['negative_class_id'])]}
        assert item['source'] == f'{train_file}:{i + 1}:{IDS[i]}'


def test_2way_fixed_shot_and_hard_negative_ranks(train_file, root):
    ds = LCLEpisodeDataset(train_file, root, policy='2way', shot=3, num_episodes=3000, seed=0)
    metas = [ds.meta(i) for i in range(3000)]
    assert {m['shot'] for m in metas} == {3}
    ranks = Counter(m['negative_rank'] for m in metas)
    # weights 3, 2, 1 for ranks 0, 1, 2: expected 1500, 1000, 500 (sd <= 27)
    for rank, expected in ((0, 1500), (1, 1000), (2, 500)):
        assert abs(ranks[rank] - expected) < 130, ranks
    assert ranks[0] > ranks[1] > ranks[2]
    for m in metas:  # the negative is the neighbour of that rank
        c = IDS.index(m['class_id'])
        assert m['negative_class_id'] == IDS[(c + 1 + m['negative_rank']) % 5]
    own = sum(m['query_class_id'] == m['class_id'] for m in metas)
    assert abs(own - 1500) < 140  # the query's class: own or negative, 1/2 each (sd 27)


def test_2way_random_shots_uniform_on_2_to_16(train_file, root):
    ds = LCLEpisodeDataset(train_file, root, policy='2way_random', num_episodes=3000, seed=1)
    counts = Counter(ds.meta(i)['shot'] for i in range(3000))
    assert set(counts) == set(range(2, 17))
    for k in range(2, 17):  # 200 expected each, sd 13.7
        assert abs(counts[k] - 200) < 70, counts


def test_2way_weight_shots_favour_many(train_file, root):
    ds = LCLEpisodeDataset(train_file, root, policy='2way_weight', num_episodes=3000, seed=2)
    counts = Counter(ds.meta(i)['shot'] for i in range(3000))
    total = sum(math.exp(k / 2) for k in range(2, 17))
    for k in range(2, 17):  # P(k) = e^(k/2) / sum: P(16) = 0.3935, P(15) = 0.2387, ..., P(2) = 0.0011
        p = math.exp(k / 2) / total
        assert abs(counts[k] / 3000 - p) < 5 * math.sqrt(p * (1 - p) / 3000) + 0.002, (k, counts)
    assert counts[16] > counts[14] > counts[12] > counts[10] > counts[8]
    assert min(counts) >= 2 and max(counts) <= 16


def test_label_substitution_renames_the_own_class_consistently(train_file, root):
    ds = LCLEpisodeDataset(train_file, root, policy='label_substitution', shot=2, num_episodes=40, seed=5)
    made_up = set()
    for i in range(40):
        e, meta = ds.episode(i), ds.meta(i)
        own_id = meta['class_id']
        fake = meta['substituted'][NAMES[IDS.index(own_id)]]
        made_up.add(fake)
        assert fake.isalpha() and fake.islower() and 4 <= len(fake) <= 8 and fake not in NAMES
        for path, name in e.support:
            in_own = path.split('/')[-2] == own_id
            assert name == (fake if in_own else NAMES[IDS.index(meta['negative_class_id'])])
        query_own = e.query.split('/')[-2] == own_id
        assert e.answer == (fake if query_own else NAMES[IDS.index(meta['negative_class_id'])])
        assert e.others == [NAMES[IDS.index(meta['negative_class_id'])] if query_own else fake]
        if i < 3:
            assert ds[i]['conversations'][-1]['value'] == f'There is "{e.answer}" in the image.'
    assert len(made_up) > 30  # a fresh name per episode


def test_rename_prob_shows_each_concept_under_a_fresh_name_half_the_time(train_file, root):
    base = LCLEpisodeDataset(train_file, root, policy='2way_random', min_shot=2, max_shot=4, num_episodes=400, seed=3)
    ds = LCLEpisodeDataset(train_file, root, policy='2way_random', min_shot=2, max_shot=4, num_episodes=400, seed=3,
                           rename_prob=0.5)
    renamed = 0
    for i in range(400):
        e, plain = ds.episode(i), base.episode(i)
        # the draws of the episode are those without renaming: same images, order, shot and query
        assert [p for p, _ in e.support] == [p for p, _ in plain.support] and e.query == plain.query
        assert e.shot == plain.shot
        real_of = {}
        for (_, shown), (_, real) in zip(e.support, plain.support, strict=True):
            assert real_of.setdefault(shown, real) == real  # one shown name per concept, used consistently
        assert len(real_of) == 2
        substituted = ds.meta(i).get('substituted', {})
        for shown, real in real_of.items():
            if shown != real:
                renamed += 1
                assert substituted[real] == shown and shown.isalpha() and shown not in NAMES
        assert real_of[e.answer] == plain.answer and [real_of[o] for o in e.others] == plain.others
    assert 340 <= renamed <= 460  # 800 concepts at p = 0.5: mean 400, sd 14
    never = LCLEpisodeDataset(train_file, root, policy='2way', num_episodes=20, seed=3, rename_prob=0.0)
    assert all('substituted' not in never.meta(i) for i in range(20))
    with pytest.raises(ValueError, match=r'rename_prob must be a probability in \[0, 1\], got 1.5'):
        LCLEpisodeDataset(train_file, root, rename_prob=1.5)


def test_name_letters_sets_the_length_of_made_up_names_only(train_file, root):
    kwargs = dict(policy='2way_random', min_shot=2, max_shot=4, num_episodes=200, seed=3, rename_prob=1.0)
    long, short = LCLEpisodeDataset(train_file, root, **kwargs), \
        LCLEpisodeDataset(train_file, root, name_letters=(3, 3), **kwargs)
    lengths = set()
    for i in range(200):
        a, b = long.episode(i), short.episode(i)
        assert [p for p, _ in a.support] == [p for p, _ in b.support] and a.query == b.query and a.shot == b.shot
        names = {n for _, n in b.support}
        assert len(names) == 2 and all(len(n) == 3 and n.isalpha() and n.islower() for n in names)
        assert b.answer in names and b.others[0] in names - {b.answer}
        lengths |= {len(n) for _, n in a.support}
    assert lengths == set(range(4, 9))  # the default: 4..8 letters, every length drawn in 400 names
    substituted = LCLEpisodeDataset(train_file, root, policy='label_substitution', num_episodes=50, seed=3,
                                    name_letters=(2, 3))
    fakes = [fake for i in range(50) for fake in substituted.meta(i)['substituted'].values()]
    assert len(fakes) == 50 and {len(f) for f in fakes} == {2, 3}
    for bad in ((3, 2), (0, 4), (3,), 'abc', (2.0, 3)):
        with pytest.raises(ValueError, match=r'LCLEpisodeDataset: name_letters must be a \(fewest, most\) pair'):
            LCLEpisodeDataset(train_file, root, name_letters=bad)


def test_bad_inputs_name_file_line_and_sample(tmp_path, root, train_file):
    records = train_records()
    records[2]['neighbors'][1][0] = 'n99999999'
    path = write_jsonl(tmp_path / 'bad_id.jsonl', records)
    with pytest.raises(DataFileError, match=r"bad_id\.jsonl:3: neighbors\[1\] names class_id 'n99999999', which is "
                                            r"not a class"):
        LCLEpisodeDataset(path, root)
    records = train_records()
    records[4]['samples'] = records[4]['samples'][:5]
    path = write_jsonl(tmp_path / 'few.jsonl', records)
    LCLEpisodeDataset(path, root, policy='2way', shot=4)  # 4 shots + the query: 5 samples do
    with pytest.raises(DataFileError, match=r"few\.jsonl:5: class 'n01494475' has 5 sample\(s\); policy "
                                            r"'2way_random' needs 17"):
        LCLEpisodeDataset(path, root, policy='2way_random')
    bad = tmp_path / 'broken.jsonl'
    bad.write_text(open(train_file).read() + '{"class_id": "n1",\n', encoding='utf-8')
    with pytest.raises(DataFileError, match=r'broken\.jsonl:6: not valid JSON'):
        LCLEpisodeDataset(str(bad), root)
    records = train_records()
    records[1]['class_id'] = 1443537
    with pytest.raises(DataFileError, match=r"int_id\.jsonl:2: 'class_id' must be a non-empty string"):
        LCLEpisodeDataset(write_jsonl(tmp_path / 'int_id.jsonl', records), root)
    with pytest.raises(ValueError, match=r"policy must be one of .*'mix' is an InterleaveDataset"):
        LCLEpisodeDataset(train_file, root, policy='mix')


def test_missing_image_names_episode_and_path(tmp_path, root, train_file):
    (tmp_path / 'imagenet' / rel(0, 3)).unlink()
    ds = LCLEpisodeDataset(train_file, root, policy='2way_random', num_episodes=200, seed=0)
    broken = next(i for i in range(200) if any(p.endswith(rel(0, 3)) for p in
                                               [ds.episode(i).query, *(p for p, _ in ds.episode(i).support)]))
    with pytest.raises(DataFileError, match=rf"train900_pairs\.jsonl:\d:n0\d+: image not found: .*{rel(0, 3)}"):
        ds[broken]


def eval_records():
    return [{'class_id': IDS[c], 'class_name': NAMES[c], 'context_samples': [rel(c, j) for j in range(3)],
             'test_samples': [rel(c, j) for j in range(3, 6)]} for c in range(4)]


def test_test_episodes_pair_classes_in_file_order(tmp_path, root):
    path = write_jsonl(tmp_path / 'test100_pairs.jsonl', eval_records())
    ds = LCLTestEpisodeDataset(path, root, shot=2, seed=0)
    assert len(ds) == 12
    e = ds.episode(4)  # class 1 (goldfish), its test sample 1; partner class 0 (tench)
    assert sorted(e.support) == sorted([(f'{root}/{rel(1, 0)}', 'goldfish'), (f'{root}/{rel(1, 1)}', 'goldfish'),
                                        (f'{root}/{rel(0, 0)}', 'tench'), (f'{root}/{rel(0, 1)}', 'tench')])
    assert e.query == f'{root}/{rel(1, 4)}' and (e.answer, e.others) == ('goldfish', ['tench'])
    assert ds.meta(4)['source'] == f'{path}:2:{IDS[1]}:test_samples[1]'
    assert ds.meta(9)['negative_class_id'] == IDS[2]
    assert len(LCLTestEpisodeDataset(path, root, shot=2, samples_per_class=1)) == 4
    assert [im.getpixel((0, 0)) for im in ds[4]['image']][-1] == colour(1, 4)
    with pytest.raises(DataFileError, match='3 classes; 2-way test episodes pair classes'):
        LCLTestEpisodeDataset(write_jsonl(tmp_path / 'odd.jsonl', eval_records()[:3]), root)
    with pytest.raises(DataFileError, match=r"test100_pairs\.jsonl:1: class 'n01440764' has 3 context_samples, "
                                            r"fewer than shot=4"):
        LCLTestEpisodeDataset(path, root, shot=4)


def test_registered():
    assert DATASETS.get('LCLEpisodeDataset') is LCLEpisodeDataset
    assert DATASETS.get('LCLTestEpisodeDataset') is LCLTestEpisodeDataset
