"""The synthetic ISEKAI generator (mllm/demo/isekai_synth.py): its files load with the real loaders unchanged
(ISEKAIDataset, LCLEpisodeDataset, LCLTestEpisodeDataset, LLaVAInstructDataset), seen and unseen concepts share
no name and no attribute combination, neighbours are ranked by attribute similarity, and the output is
byte-identical for the same arguments and reused when present. Sizes are tiny (16 px, few images)."""
import hashlib
import json
import os

import pytest

from mllm.dataset.builder import build_raw_dataset, run_prepare_steps  # noqa: F401  (registers every dataset)
from mllm.dataset.multi_image_dataset.isekai import ISEKAIDataset
from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset, LCLTestEpisodeDataset
from mllm.dataset.root import FUNCTIONS
from mllm.dataset.single_image_dataset.instruct import LLaVAInstructDataset
from mllm.demo.isekai_synth import STOPLIST, generate_isekai_synth, made_up_names, rank_neighbors, similarity

ARGS = dict(num_seen=6, num_unseen=4, images_per_concept=6, image_size=16, seed=3, queries_per_concept=2)


def tree_hashes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('isekai_synth'))
    return root, generate_isekai_synth(root, **ARGS)


def test_files_load_with_the_real_loaders(synth):
    root, info = synth
    images = os.path.join(root, 'images')
    assert info['counts'] == {'seen': 6, 'unseen': 4, 'images': 60, 'train_pairs': 6, 'test_pairs': 4,
                              'isekai_unseen': 8, 'seen_single': 36}
    isekai = ISEKAIDataset(os.path.join(root, 'isekai_unseen.json'), images, shot=4, check_images=True)
    assert len(isekai) == 8
    item = isekai[0]
    assert len(item['image']) == 9 and item['image'][0].size == (16, 16)
    meta = isekai.meta(0)
    assert meta['positive'] in info['unseen_names'] and meta['negative'] in info['unseen_names']
    labels = [isekai.meta(i)['positive'] for i in range(len(isekai))]
    assert sorted(labels) == sorted(n for n in info['unseen_names'] for _ in range(2))  # 2 queries per concept

    train = LCLEpisodeDataset(os.path.join(root, 'train_pairs.jsonl'), images, policy='2way_random', min_shot=2,
                              max_shot=5, num_episodes=12, seed=1)
    for i in range(12):
        episode = train.episode(i)
        assert all(os.path.isfile(p) for p, _ in episode.support) and os.path.isfile(episode.query)
        assert episode.answer in info['seen_names'] and episode.others[0] in info['seen_names']
    assert len(train[0]['image']) == 2 * train.episode(0).shot + 1

    test = LCLTestEpisodeDataset(os.path.join(root, 'test_pairs.jsonl'), images, shot=4)
    assert len(test) == 8
    for i in range(8):
        episode = test.episode(i)
        assert episode.answer in info['unseen_names'] and os.path.isfile(episode.query)
        assert episode.query not in [p for p, _ in episode.support]
    assert len(test[3]['image']) == 9

    single = LLaVAInstructDataset(os.path.join(root, 'seen_single.jsonl'), images)
    assert len(single) == 36
    item = single[0]
    assert item['image'].size == (16, 16)
    human, gpt = item['conversations']
    assert human['value'] == '<image>\nWhat is shown in this image?'
    assert gpt['value'] == f'There is "{info["seen_names"][0]}" in the image.'


def test_seen_and_unseen_are_disjoint(synth):
    root, info = synth
    seen = [c for c in info['concepts'] if c['split'] == 'seen']
    unseen = [c for c in info['concepts'] if c['split'] == 'unseen']
    combo = lambda c: (c['shape'], c['pattern'], c['colour'])  # noqa: E731
    assert not {c['name'] for c in seen} & {c['name'] for c in unseen}
    assert not {combo(c) for c in seen} & {combo(c) for c in unseen}
    assert len({combo(c) for c in info['concepts']}) == len({c['id'] for c in info['concepts']}) == 10
    names = [c['name'] for c in info['concepts']]
    assert len(set(names)) == 10 and not set(names) & STOPLIST
    # the training files name seen concepts only, the evaluation files unseen ones only
    lines = lambda name: [json.loads(x) for x in open(os.path.join(root, name), encoding='utf-8')]  # noqa: E731
    assert {r['class_name'] for r in lines('train_pairs.jsonl')} == set(info['seen_names'])
    assert {n for r in lines('train_pairs.jsonl') for _, n, _ in r['neighbors']} <= set(info['seen_names'])
    assert {r['conversations'][1]['value'].split('"')[1] for r in lines('seen_single.jsonl')} == set(info['seen_names'])
    assert {r['class_name'] for r in lines('test_pairs.jsonl')} == set(info['unseen_names'])
    assert {r[k] for r in lines('isekai_unseen.json') for k in ('positive_promt', 'negative_promt')} == \
        set(info['unseen_names'])


def test_names_are_pronounceable_unique_and_seeded():
    a, b = made_up_names(200, 0), made_up_names(200, 0)
    assert a == b and len(set(a)) == 200 and made_up_names(20, 1) != a[:20]
    assert all(n.isalpha() and n.islower() and 4 <= len(n) <= 9 and n not in STOPLIST for n in a)
    assert all(any(v in n for v in 'aeiou') for n in a)


def test_short_names_keep_clear_of_short_english_words():
    names = made_up_names(192, 0, letters=(3, 3))
    assert len(set(names)) == 192 and all(len(n) == 3 and n.isalpha() and n.islower() for n in names)
    assert not set(names) & STOPLIST and not {'the', 'ten', 'red', 'box', 'six'} - STOPLIST
    assert all(any(v in n for v in 'aeiou') for n in names)
    assert made_up_names(20, 0, letters=(2, 3)) != names[:20]
    with pytest.raises(ValueError, match=r'made_up_names: only \d+ distinct names of 2\.\.2 letters found, 500 '
                                         r'needed; widen the letter range'):
        made_up_names(500, 0, letters=(2, 2))


def test_name_letters_reach_every_file_and_the_cache_key(tmp_path):
    root = str(tmp_path / 'short')
    args = dict(num_seen=6, num_unseen=4, images_per_concept=3, queries_per_concept=1, image_size=16)
    info = generate_isekai_synth(root, name_letters=(3, 3), **args)
    assert info['params']['name_letters'] == [3, 3]
    assert all(len(n) == 3 for n in info['seen_names'] + info['unseen_names'])
    records = [json.loads(x) for x in open(os.path.join(root, 'isekai_unseen.json'), encoding='utf-8')]
    assert {len(r[k]) for r in records for k in ('positive_promt', 'negative_promt', 'label_name')} == {3}
    again = generate_isekai_synth(root, name_letters=(3, 3), **args)
    assert again['skipped'] and again['seen_names'] == info['seen_names']
    longer = generate_isekai_synth(root, **args)  # other names: written anew, not reused
    assert not longer['skipped'] and 'name_letters' not in longer['params']
    assert all(4 <= len(n) <= 9 for n in longer['seen_names'])
    with pytest.raises(ValueError, match=r'generate_isekai_synth: name_letters must be a \(fewest, most\) pair'):
        generate_isekai_synth(root, name_letters=(4, 3), **args)


def test_phrases_reach_the_single_image_file_and_the_cache_key(tmp_path):
    root = str(tmp_path / 'worded')
    args = dict(num_seen=4, num_unseen=2, images_per_concept=3, queries_per_concept=1, image_size=16)
    phrases = {'support_question': 'What is this? <image>', 'answer': '"<label>".'}
    info = generate_isekai_synth(root, phrases=phrases, **args)
    assert info['params']['phrases'] == phrases
    single = [json.loads(x) for x in open(os.path.join(root, 'seen_single.jsonl'), encoding='utf-8')]
    assert {r['conversations'][0]['value'] for r in single} == {'What is this? <image>'}
    assert {r['conversations'][1]['value'] for r in single} == {f'"{n}".' for n in info['seen_names']}
    plain = generate_isekai_synth(root, **args)
    assert not plain['skipped'] and 'phrases' not in plain['params']
    single = [json.loads(x) for x in open(os.path.join(root, 'seen_single.jsonl'), encoding='utf-8')]
    assert {r['conversations'][0]['value'] for r in single} == {'<image>\nWhat is shown in this image?'}
    with pytest.raises(ValueError, match=r"phrases\['answer'\] must hold <label>"):
        generate_isekai_synth(root, phrases={'answer': 'nothing'}, **args)


def test_neighbours_ranked_by_similarity_hand_checked(synth):
    concepts = [
        {'shape': 'circle', 'pattern': 'solid', 'colour': 'red'},     # 0: the anchor
        {'shape': 'square', 'pattern': 'dots', 'colour': 'blue'},     # 1: shares nothing          -> 0
        {'shape': 'square', 'pattern': 'solid', 'colour': 'red'},     # 2: pattern + colour        -> 3
        {'shape': 'circle', 'pattern': 'dots', 'colour': 'blue'},     # 3: shape                   -> 4
        {'shape': 'square', 'pattern': 'dots', 'colour': 'red'},      # 4: colour                  -> 1
        {'shape': 'circle', 'pattern': 'solid', 'colour': 'green'},   # 5: shape + pattern         -> 6
    ]
    assert [similarity(concepts[0], c) for c in concepts] == [7, 0, 3, 4, 1, 6]
    assert rank_neighbors(concepts, 0) == [5, 3, 2, 4, 1]
    # the written file follows the same ranking
    root, info = synth
    seen = [c for c in info['concepts'] if c['split'] == 'seen']
    by_id = {c['id']: c for c in seen}
    with open(os.path.join(root, 'train_pairs.jsonl'), encoding='utf-8') as f:
        for k, record in enumerate(map(json.loads, f)):
            ids = [cid for cid, _, _ in record['neighbors']]
            assert ids == [seen[j]['id'] for j in rank_neighbors(seen, k)]
            scores = [similarity(by_id[record['class_id']], by_id[cid]) for cid in ids]
            assert scores == sorted(scores, reverse=True) and len(ids) == 5
            assert all(path == f'{cid}/0.png' and by_id[cid]['name'] == name
                       for cid, name, path in record['neighbors'])


def test_deterministic_and_reused(tmp_path, synth):
    root, _ = synth
    other = str(tmp_path / 'again')
    assert generate_isekai_synth(other, **ARGS)['skipped'] is False
    assert tree_hashes(other) == tree_hashes(root)
    stamp = os.path.getmtime(os.path.join(other, 'images', os.listdir(os.path.join(other, 'images'))[0], '0.png'))
    assert generate_isekai_synth(other, **ARGS)['skipped'] is True
    assert os.path.getmtime(os.path.join(other, 'images', os.listdir(os.path.join(other, 'images'))[0],
                                         '0.png')) == stamp
    changed = str(tmp_path / 'seed4')
    generate_isekai_synth(changed, **dict(ARGS, seed=4))
    assert tree_hashes(changed) != tree_hashes(root)


def test_images_of_one_concept_differ(synth):
    root, info = synth
    cid = info['concepts'][0]['id']
    hashes = {tree_hashes(os.path.join(root, 'images'))[f'{cid}/{k}.png'] for k in range(6)}
    assert len(hashes) == 6


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_unseen must be even'):
        generate_isekai_synth(str(tmp_path), **dict(ARGS, num_unseen=3))
    with pytest.raises(ValueError, match='exceeds the 192'):
        generate_isekai_synth(str(tmp_path), **dict(ARGS, num_seen=190))
    with pytest.raises(ValueError, match='queries_per_concept'):
        generate_isekai_synth(str(tmp_path), **dict(ARGS, queries_per_concept=6))


def test_runs_as_a_data_args_prepare_step(tmp_path):
    root = str(tmp_path / 'reg')
    run_prepare_steps({'prepare': [dict(type='generate_isekai_synth', root=root, num_seen=2, num_unseen=2,
                                        images_per_concept=3, image_size=16, queries_per_concept=1)]})
    assert FUNCTIONS.get('generate_isekai_synth') is not None
    with open(os.path.join(root, 'info.json'), encoding='utf-8') as f:
        assert json.load(f)['counts']['images'] == 12
