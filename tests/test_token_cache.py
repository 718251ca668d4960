"""The persistent tokenisation cache (mllm/dataset/token_cache.py): exact outputs, hits, namespaces, workers, errors."""
import sqlite3
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mllm.dataset import token_cache
from mllm.dataset.single_image_conversation import MisalignedSampleError, SingleImageConvDataset, TooLongError
from mllm.dataset.single_image_dataset.rec import RECDataset
from mllm.demo.shapes import generate_shapes_dataset
from mllm.demo.tiny_tokenizer import build_tiny_tokenizer
from tests.helpers import ItemList

SQUARE = dict(type='Expand2square')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    info = generate_shapes_dataset(str(tmp_path_factory.mktemp('shapes')), num_train=10, num_test=6, seed=0)
    kw = dict(image_folder=info['image_folder'], template_file='REC_shapes.json')
    return {'train': RECDataset(info['train_jsonl'], **kw), 'eval': RECDataset(info['test_jsonl'], **kw)}


@pytest.fixture(autouse=True)
def fresh_stores():
    """Each test starts and ends with no open store, as a new process would."""
    token_cache.close_all()
    yield
    token_cache.close_all()


class CountingTokenizer:
    """The tokenizer, with its calls counted (the dataset reads every other attribute through)."""

    def __init__(self, tokenizer):
        self.inner, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def make(raw, preprocessor, mode, cache=None, **kwargs):
    kwargs.setdefault('max_length', 512)
    return SingleImageConvDataset(raw, preprocessor, mode=mode, name='shapes', transform=SQUARE, token_cache=cache,
                                  **kwargs)


def outputs(ds):
    return [(s['input_ids'], s['labels']) for s in (ds[i] for i in range(len(ds)))]


def assert_same(got, want):
    assert len(got) == len(want)
    for (ids, labels), (ref_ids, ref_labels) in zip(got, want, strict=True):
        assert ids.dtype == ref_ids.dtype == torch.long and labels.dtype == torch.long
        assert torch.equal(ids, ref_ids) and torch.equal(labels, ref_labels)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_cached_equals_uncached_and_second_pass_skips_the_tokenizer(shapes, preprocessor, tmp_path, mode):
    want = outputs(make(shapes[mode], preprocessor, mode))
    ds = make(shapes[mode], preprocessor, mode, cache=str(tmp_path / 'cache'))
    assert_same(outputs(ds), want)  # cold: computed and stored
    n = len(ds)
    # eval: the prompt and the reference are two lookups per sample; equal references share one entry
    stats = ds.token_cache.stats()
    assert stats['hits'] + stats['misses'] == n * (2 if mode == 'eval' else 1) and stats['misses'] >= n
    ds.token_cache.flush()
    assert len(ds.token_cache) == stats['misses']
    counting = CountingTokenizer(ds.tokenizer)
    ds.tokenizer = counting
    before = ds.token_cache.stats()
    assert_same(outputs(ds), want)  # warm, same process
    assert ds.token_cache.stats()['misses'] == before['misses']
    assert counting.calls == 0


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_a_second_run_hits(shapes, preprocessor, tmp_path, mode):
    want = outputs(make(shapes[mode], preprocessor, mode))
    first = make(shapes[mode], preprocessor, mode, cache=str(tmp_path))
    outputs(first)
    token_cache.close_all()  # the first run's process ends
    assert len(first.token_cache) == first.token_cache.misses
    second = make(shapes[mode], preprocessor, mode, cache=str(tmp_path))
    counting = CountingTokenizer(second.tokenizer)
    second.tokenizer = counting
    assert_same(outputs(second), want)
    assert second.token_cache.misses == 0 and second.token_cache.hits > 0 and counting.calls == 0


def test_what_changes_the_output_changes_the_namespace(shapes, preprocessor, tmp_path):
    raw, cache = shapes['train'], str(tmp_path)
    base = make(raw, preprocessor, 'train', cache)
    outputs(base)
    tok = build_tiny_tokenizer()
    tok.add_tokens(['<extra_token>'])
    variants = {
        'max_length': (preprocessor, dict(max_length=400)),
        'template': (preprocessor, dict(conv_overrides=dict(system=''))),
        'template field, same text': (preprocessor, dict(conv_overrides=dict(stop_token_ids=[2]))),
        'tokenizer': (dict(preprocessor, text=tok), {}),
        'num_image_tokens': (dict(preprocessor, num_image_tokens=preprocessor['num_image_tokens'] - 1), {}),
    }
    namespaces = {base.token_cache.namespace}
    for what, (pre, kwargs) in variants.items():
        ds = make(raw, pre, 'train', cache, **kwargs)
        assert ds.token_cache.namespace not in namespaces, what
        namespaces.add(ds.token_cache.namespace)
        assert_same(outputs(ds), outputs(make(raw, pre, 'train', **kwargs)))
        assert ds.token_cache.hits == 0 and ds.token_cache.misses == len(ds), what
    # the same settings in a new object: the same namespace
    assert make(raw, preprocessor, 'train', cache).token_cache.namespace == base.token_cache.namespace


def test_the_namespace_is_the_same_in_a_new_process_for_an_equal_tokenizer(preprocessor):
    # a rebuilt tokenizer (a second run) fingerprints the same; adding a token to it changes the fingerprint
    tok = build_tiny_tokenizer()
    assert token_cache.tokenizer_fingerprint(tok) == token_cache.tokenizer_fingerprint(build_tiny_tokenizer())
    before = token_cache.tokenizer_fingerprint(tok)
    tok.add_tokens(['<later>'])
    assert token_cache.tokenizer_fingerprint(tok) != before


@pytest.mark.parametrize('commit_every', [2, 256])  # commits while the other worker writes / only the exit's
def test_forked_workers_write_concurrently_and_a_reader_sees_everything(shapes, preprocessor, tmp_path, monkeypatch,
                                                                        commit_every):
    monkeypatch.setattr(token_cache, 'COMMIT_EVERY', commit_every)
    raw, cache = shapes['train'], str(tmp_path)
    want = outputs(make(raw, preprocessor, 'train'))
    writer = make(raw, preprocessor, 'train', cache)
    loader = DataLoader(writer, batch_size=1, num_workers=2, collate_fn=lambda b: b[0],
                        multiprocessing_context='fork')
    got = [(s['input_ids'], s['labels']) for s in loader]  # the workers write; their exit writes the tail
    assert_same(got, want)
    assert writer.token_cache.stats() == {'hits': 0, 'misses': 0}  # the counts live in the workers
    assert len(writer.token_cache) == len(raw)
    reader = make(raw, preprocessor, 'train', cache)
    assert_same(outputs(reader), want)
    assert reader.token_cache.stats() == {'hits': len(raw), 'misses': 0}


def long_item(answer='yes'):
    return {'image': Image.new('RGB', (64, 64)),
            'conversations': [{'from': 'human', 'value': '<image> ' + 'the red circle is left of the blue one ' * 20},
                              {'from': 'gpt', 'value': answer}]}


@pytest.mark.parametrize('mode, error', [('eval', TooLongError), ('train', MisalignedSampleError)])
def test_an_error_sample_raises_every_time_and_is_not_cached(preprocessor, tmp_path, mode, error):
    # 64 image tokens fit in 120, the 200-token question does not: eval refuses, train truncates the answer away
    ds = SingleImageConvDataset(ItemList([long_item()]), preprocessor, mode=mode, name='long', max_length=120,
                                token_cache=str(tmp_path))
    counting = CountingTokenizer(ds.tokenizer)
    ds.tokenizer = counting
    for attempt in range(1, 4):
        with pytest.raises(error, match=r'long\[0\]'):
            ds.process(0)
        assert ds.token_cache.hits == 0 and counting.calls == attempt
    token_cache.close_all()
    assert len(ds.token_cache) == 0


def test_blobs_are_compressed_int32_in_one_wal_table(shapes, preprocessor, tmp_path):
    ds = make(shapes['train'], preprocessor, 'train', str(tmp_path))
    ids, labels = ds[0]['input_ids'], ds[0]['labels']
    token_cache.close_all()
    conn = sqlite3.connect(tmp_path / token_cache.DB_NAME)
    try:
        assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
        (blob_ids, blob_labels), = conn.execute('SELECT ids, labels FROM entries').fetchall()
    finally:
        conn.close()
    for blob, want in ((blob_ids, ids), (blob_labels, labels)):
        assert np.frombuffer(zlib.decompress(blob), dtype='<i4').tolist() == want.tolist()


def test_token_cache_is_a_conv_args_key():
    from mllm.models.builder import check_model_args, conv_args_keys

    assert 'token_cache' in conv_args_keys()
    check_model_args({'type': 'llava', 'model_name_or_path': 'tiny',
                      'conv_args': {'token_cache': '/tmp/x', 'max_length': 128}})


def test_flamingo_renderer_shares_the_cache(preprocessor, tmp_path):
    import copy

    from mllm.dataset.flamingo_conversation import FlamingoConvDataset

    tok = copy.deepcopy(preprocessor['text'])
    tok.add_special_tokens({'additional_special_tokens': ['<image>', '<|endofchunk|>', '<answer>']})
    pre = dict(preprocessor, text=tok)
    items = [{'image': [Image.new('RGB', (40, 30), (200, 10, 10)), Image.new('RGB', (40, 30), (0, 0, 255))],
              'conversations': [{'from': 'human', 'value': '<image>What is it?', 'in_context': True},
                                {'from': 'gpt', 'value': 'a red card', 'in_context': True},
                                {'from': 'human', 'value': '<image>And this?'},
                                {'from': 'gpt', 'value': 'a blue card'}]}]

    def build(cache=None):
        return FlamingoConvDataset(ItemList(items), pre, conv_template='otter', name='ep', token_cache=cache)

    want = outputs(build())
    assert_same(outputs(build(str(tmp_path))), want)
    token_cache.close_all()
    again = build(str(tmp_path))
    assert_same(outputs(again), want)
    assert again.token_cache.stats() == {'hits': 1, 'misses': 0}
