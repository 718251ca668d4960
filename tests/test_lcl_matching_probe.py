"""benchmarks/lcl_matching_probe.py: the token sequences it trains on, written out by hand for both layouts; the
concept tokens and oracle vectors it puts in the key slots; and a few steps of each kind of key end to end,
seeded (two runs give the same curve) and warm-started from a saved LM."""
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import lcl_matching_probe as probe  # noqa: E402

from mllm.dataset.multi_image_dataset.episodes import Episode  # noqa: E402
from mllm.demo.isekai_synth import generate_isekai_synth  # noqa: E402

EPISODE = Episode(support=[('im/c000/0.png', 'dax'), ('im/c001/0.png', 'fen')], query='im/c000/1.png',
                  answer='dax', others=['fen'], shot=1, source='hand')


def words(vocab, ids):
    return ' '.join(vocab.word[i] for i in ids)


def test_chat_layout_by_hand():
    vocab = probe.Vocab()
    row = probe.render(EPISODE, vocab, 'chat', 'oracle', None, slots=2)
    ids, labels, paths = row
    assert words(vocab, ids) == (
        'USER <ims> <key> <key> <ime> what is this ? ASSIST " d a x " . </s> '
        'USER <ims> <key> <key> <ime> what is this ? ASSIST " f e n " . </s> '
        'USER <ims> <key> <key> <ime> and what is this ? ASSIST " d a x " . </s>')
    answers = [words(vocab, [t]) for t, label in zip(ids, labels) if label != -100]
    assert ' '.join(answers) == 'd a x " . </s> f e n " . </s> d a x " . </s>'  # every answer, nothing else
    assert all(label in (-100, t) for t, label in zip(ids, labels))
    assert paths == ['im/c000/0.png', 'im/c001/0.png', 'im/c000/1.png']  # one key per exchange, in order
    at = probe.answer_start(row)
    assert words(vocab, ids[at - 1:at + 2]) == 'ASSIST " d'  # the opening quote predicts the first letter


def test_bare_layout_and_concept_tokens_by_hand():
    vocab = probe.Vocab()
    row = probe.render(EPISODE, vocab, 'bare', 'tokens', __import__('random').Random(0), slots=1)
    ids, labels, paths = row
    text = words(vocab, ids).split()
    assert paths == []
    assert text[2:6] == ['d', 'a', 'x', '.'] and text[0] == 'USER' and text[1].startswith('<c')
    dax, fen, query = text[1], text[8], text[-6]
    assert dax == query != fen  # the same name keeps its concept token within the episode, the other has its own
    at = probe.answer_start(row)
    assert vocab.word[ids[at]] == query and vocab.word[ids[at + 1]] == 'd'


def test_oracle_keys_are_one_centre_per_concept():
    bank = probe.KeyBank('oracle', ['im/c000/0.png', 'im/c000/1.png', 'im/c001/0.png'], seed=0)
    same = torch.dist(bank['im/c000/0.png'], bank['im/c000/1.png'])
    other = torch.dist(bank['im/c000/0.png'], bank['im/c001/0.png'])
    # noise of std 0.3 in 128 dims: ~0.3 * sqrt(2 * 128) = 4.8 apart; two unit-normal centres ~16 apart
    assert bank['im/c000/0.png'].shape == (1, 128) and 3.5 < same < 6.5 and other > 12


def test_random_keys_are_fresh_per_episode():
    import random

    rng = random.Random(0)
    _, _, first = probe.render(EPISODE, probe.Vocab(), 'bare', 'random', rng, slots=2)
    _, _, second = probe.render(EPISODE, probe.Vocab(), 'bare', 'random', rng, slots=2)
    assert [k.shape for k in first] == [(2, 128)] * 3  # support dax, support fen, query dax
    # noise of std 0.3 around one centre per name: ~4.8 apart per slot for the same name, ~16 for different ones
    assert 3.5 < torch.dist(first[0][0], first[2][0]) < 6.5 and torch.dist(first[0][0], first[1][0]) > 12
    assert torch.dist(first[0][0], second[0][0]) > 12  # the next episode draws new centres for the same names
    again = probe.render(EPISODE, probe.Vocab(), 'bare', 'random', random.Random(0), slots=2)[2]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # seeded


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('isekai')
    generate_isekai_synth(str(root), num_seen=6, num_unseen=2, images_per_concept=10, queries_per_concept=2,
                          image_size=64, seed=0, name_letters=(3, 3))
    return root


def run(data, *args):
    return probe.main(['--data', str(data), '--steps', '3', '--eval-every', '3', '--min-shot', '1',
                       '--max-shot', '2', '--eval-shot', '2', *args])


@pytest.mark.parametrize('keys,layout', [('tokens', 'bare'), ('oracle', 'chat'), ('features', 'chat'),
                                         ('random', 'bare')])
def test_a_few_steps_of_each_key_are_seeded(small_data, keys, layout, tmp_path):
    first = run(small_data, '--keys', keys, '--layout', layout, '--out', str(tmp_path / 'curve.json'))
    again = run(small_data, '--keys', keys, '--layout', layout)
    def figures(result):
        return [{k: v for k, v in point.items() if k != 'seconds'} for point in result['curve']]

    assert figures(first) == figures(again)
    (point,) = first['curve']
    assert point['step'] == 3 and point['loss'] > 0
    for name in ('train_query_first_letter', 'accuracy', 'exact_support_name', 'first_letter_positive',
                 'first_letter_negative'):
        assert 0.0 <= point[name] <= 1.0
    assert point['accuracy'] <= point['exact_support_name'] and point['accuracy'] <= point['first_letter_positive']
    assert json.loads((tmp_path / 'curve.json').read_text())['curve'] == first['curve']


def test_warm_start_loads_the_saved_lm(small_data, tmp_path):
    saved = tmp_path / 'not_yet' / 'lm.pt'  # the folder is made
    run(small_data, '--keys', 'tokens', '--layout', 'bare', '--save', str(saved))
    state = torch.load(saved)['lm']
    model = probe.Probe(probe.Vocab(), 128)
    model.lm.load_state_dict(state)
    fresh = probe.Probe(probe.Vocab(), 128)
    name = 'model.layers.0.self_attn.q_proj.weight'
    assert not torch.equal(fresh.lm.state_dict()[name], state[name])
    warm = run(small_data, '--keys', 'oracle', '--layout', 'bare', '--init', str(saved))
    cold = run(small_data, '--keys', 'oracle', '--layout', 'bare')
    assert warm['curve'][0]['loss'] != cold['curve'][0]['loss']
