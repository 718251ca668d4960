"""A persistent, content-addressed cache of `SingleImageConvDataset.tokenize` results (and eval references).

Enabled by `model_args.conv_args.token_cache=<directory>` (default None: off). A hit skips the tokenizer, the
span-to-label loop and the image-token expansion; images are still decoded and processed.

Key = hash(namespace, rendered text, answer spans, mode, truncate). The rendered text holds the question
phrasing, box text and system prompt, so the dataset config, the epoch's phrasing and the image size (boxes are
normalised by it) are covered without naming them. Namespace = hash of the rest that changes the output: the
tokenizer's fingerprint, BOS / image token / wrap / stop ids, num_image_tokens, max_length, every template field
and FORMAT_VERSION. Errors (TooLongError, MisalignedSampleError) are never cached: they raise every time.

Storage: `tokens.sqlite` (WAL; one table of zlib-compressed int32 blobs). Each process opens its own connection
lazily (forked DataLoader workers never share their parent's) and buffers its inserts, writing them with
`INSERT OR IGNORE` every COMMIT_EVERY entries and at exit, so no write lock is held between batches; a tail lost to
a crash is only recomputed. Use a local disk (WAL needs shared memory, not a network file system).
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import multiprocessing.util
import os
import sqlite3
import threading
import weakref
import zlib

import numpy as np
import torch

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DB_NAME = 'tokens.sqlite'
COMMIT_EVERY = 256  # entries buffered per process before they are written
BUSY_TIMEOUT_S = 30.0

_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what decides the ids a tokenizer produces; recomputed when its length changes (tokens added)."""
    memo = _fingerprints.get(tokenizer)
    if memo is not None and memo[0] == len(tokenizer):
        return memo[1]
    h = hashlib.sha256()
    backend = getattr(tokenizer, 'backend_tokenizer', None)
    if backend is not None and hasattr(backend, 'to_str'):
        h.update(b'backend:' + backend.to_str().encode())  # normaliser, pre-tokeniser, model, added tokens
    else:
        sp = getattr(tokenizer, 'sp_model', None)
        if sp is not None and hasattr(sp, 'serialized_model_proto'):
            h.update(b'sentencepiece:' + sp.serialized_model_proto())
        h.update(b'vocab:' + json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    added = getattr(tokenizer, 'added_tokens_decoder', {}) or {}
    facts = {
        'class': f'{type(tokenizer).__module__}.{type(tokenizer).__qualname__}',
        'len': len(tokenizer),
        'special': sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items()),
        'special_ids': list(tokenizer.all_special_ids),
        'added': sorted((int(i), repr(t)) for i, t in added.items()),
        # options that change how the same text is cut (slow tokenizers keep them outside any serialised model)
        'options': {k: getattr(tokenizer, k) for k in ('split_special_tokens', 'legacy', 'add_prefix_space',
                                                       'do_lower_case') if isinstance(getattr(tokenizer, k, None),
                                                                                      (bool, int, str))},
    }
    h.update(json.dumps(facts, sort_keys=True, default=str).encode())
    fingerprint = h.hexdigest()
    _fingerprints[tokenizer] = (len(tokenizer), fingerprint)
    return fingerprint


def dataset_namespace(ds) -> tuple[str, dict]:
    """(hash, description) of everything besides the rendered text that changes `ds.tokenize`'s output."""
    description = {
        'format_version': FORMAT_VERSION,
        'tokenizer': tokenizer_fingerprint(ds.tokenizer),
        'bos_token_id': ds.bos_token_id,
        'image_token_id': ds.image_token_id,
        'num_image_tokens': ds.num_image_tokens,
        'image_wrap_ids': list(ds.image_wrap_ids),
        'stop_token_ids': list(ds.stop_token_ids),
        'max_length': ds.max_length,
        'template': dataclasses.asdict(ds.template),
    }
    blob = json.dumps(description, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), description


class _Store:
    """One process's connection to one cache file, with its buffer of unwritten entries."""

    def __init__(self, path: str):
        self.path, self.pid = path, os.getpid()
        self.lock = threading.Lock()
        self.pending: dict[bytes, tuple[bytes, bytes]] = {}
        self.conn: sqlite3.Connection | None = None
        self.warned = False
        # atexit for the main process; multiprocessing's finaliser for DataLoader workers, which leave through
        # os._exit after running only those
        atexit.register(self.close)
        multiprocessing.util.Finalize(None, self.close, exitpriority=10)

    def _connect(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute('PRAGMA synchronous=NORMAL')  # WAL + NORMAL: no corruption, maybe a lost tail
        return self.conn

    def get(self, key: bytes):
        with self.lock:
            if key in self.pending:
                return self.pending[key]
            try:
                return self._connect().execute('SELECT ids, labels FROM entries WHERE key = ?', (key,)).fetchone()
            except sqlite3.Error as e:
                self._warn(e)
                return None

    def put(self, key: bytes, ids: bytes, labels: bytes) -> None:
        with self.lock:
            self.pending[key] = (ids, labels)
            full = len(self.pending) >= COMMIT_EVERY
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.pending or os.getpid() != self.pid:
                return
            rows = [(k, i, lab) for k, (i, lab) in self.pending.items()]
            self.pending.clear()  # also on failure: a cache may drop entries, it must not stall training
            try:
                conn = self._connect()
                conn.execute('BEGIN IMMEDIATE')
                try:
                    conn.executemany('INSERT OR IGNORE INTO entries (key, ids, labels) VALUES (?, ?, ?)', rows)
                    conn.execute('COMMIT')
                except BaseException:
                    conn.execute('ROLLBACK')
                    raise
            except sqlite3.Error as e:
                self._warn(e)

    def close(self) -> None:
        if os.getpid() != self.pid:  # a fork's copy of the parent's store: the parent's to close
            return
        self.flush()
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def _warn(self, error) -> None:
        if not self.warned:
            self.warned = True
            logger.warning('token cache %s: %s (entries are recomputed; further errors are not logged)',
                           self.path, error)


_stores: dict[tuple[int, str], _Store] = {}
_stores_lock = threading.Lock()


def _store(path: str) -> _Store:
    with _stores_lock:
        key = (os.getpid(), path)
        if key not in _stores:
            _stores[key] = _Store(path)
        return _stores[key]


def _create(path: str) -> None:
    """The file, its table and WAL mode, made once by the process that builds the dataset (before workers fork)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute('PRAGMA journal_mode=WAL')  # persistent: every later connection is in WAL mode
        conn.execute('CREATE TABLE IF NOT EXISTS entries (key BLOB PRIMARY KEY, ids BLOB NOT NULL, '
                     'labels BLOB NOT NULL) WITHOUT ROWID')
    finally:
        conn.close()


def _to_blob(t: torch.Tensor) -> bytes:
    # runs of image-token ids and of -100 labels shrink ~5x even at the fastest level (tens of microseconds)
    return zlib.compress(t.numpy().astype('<i4').tobytes(), 1)


def _from_blob(blob: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(zlib.decompress(blob), dtype='<i4').astype(np.int64))


class TokenCache:
    """The cache of one dataset: a namespace in a directory's SQLite file, with this process's hit/miss counts.

    Picklable (spawned DataLoader workers): only the path and namespace travel; connections are per process."""

    def __init__(self, directory: str, namespace: str):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, DB_NAME)
        self.namespace = namespace
        self.hits = self.misses = 0
        _create(self.path)

    def key(self, kind: str, *parts) -> bytes:
        blob = json.dumps([self.namespace, kind, *parts], ensure_ascii=False).encode()
        return hashlib.blake2b(blob, digest_size=20).digest()

    def get(self, key: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
        row = _store(self.path).get(key)
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return _from_blob(row[0]), _from_blob(row[1])

    def put(self, key: bytes, ids: torch.Tensor, labels: torch.Tensor) -> None:
        _store(self.path).put(key, _to_blob(ids), _to_blob(labels))

    def flush(self) -> None:
        """Write this process's buffered entries now (they are also written every COMMIT_EVERY and at exit)."""
        _store(self.path).flush()

    def stats(self) -> dict:
        return {'hits': self.hits, 'misses': self.misses}

    def __len__(self) -> int:
        """Entries written to the file (all namespaces; this process's unwritten buffer excluded)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            return conn.execute('SELECT COUNT(*) FROM entries').fetchone()[0]
        finally:
            conn.close()

    def __repr__(self):
        return f'TokenCache({self.directory!r}, namespace={self.namespace[:12]}, hits={self.hits}, ' \
               f'misses={self.misses})'


def close_all() -> None:
    """Write and close every store of this process and forget them (a later lookup reopens the file), as a
    process end would: tests and benchmarks use it to make the next pass read from disk."""
    with _stores_lock:
        mine = [k for k in _stores if k[0] == os.getpid()]
        stores = [_stores.pop(k) for k in mine]
    for store in stores:
        store.close()
