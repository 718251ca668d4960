"""Dataset mixtures: concatenation, seeded probability-weighted interleaving, seeded subsets, and a
held-out split for sources that ship no official one.

Each holds already-built datasets and maps a global index to (dataset, local index) with numpy
index tables computed from the seed, so the mixture is the same on every rank and every run with
one seed. `set_epoch(epoch)` (called by `EpochCallback` at the start of each training epoch)
redraws the interleaving and the subsets from (seed, epoch) when `reshuffle_each_epoch` is set, so
long runs see other samples each epoch while every rank still agrees on the table.
Lengths never change between epochs (the sampler and the LR schedule rely on them).
`meta(index)` is forwarded to the member dataset, so metrics see each sample's facts;
`lengths()` gives every position's estimated token count (see `mllm.dataset.lengths`).
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def forward_set_epoch(datasets, epoch: int) -> None:
    for d in datasets:
        if hasattr(d, 'set_epoch'):
            d.set_epoch(epoch)


def forward_meta(dataset, index: int) -> dict:
    return dataset.meta(index) if hasattr(dataset, 'meta') else {}


def member_lengths(dataset) -> np.ndarray:
    from ..lengths import dataset_lengths  # lazily: lengths.py imports the mixtures

    return dataset_lengths(dataset)


def seeded_rng(*keys: int) -> np.random.Generator:
    """A generator keyed by several integers, e.g. (seed, epoch, stream): no arithmetic mixing, no collisions."""
    return np.random.default_rng([int(k) for k in keys])


def index_dtype(n: int):
    return np.int32 if n < 2 ** 31 else np.int64


def permutation_stream(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices into range(n): seeded permutations of range(n) one after another.

    Each pass reads every item once, so no item repeats before all others were read, and a source
    drawn more often than it has items is cycled evenly (with replacement across passes).
    """
    passes = -(-count // n)
    rows = np.broadcast_to(np.arange(n, dtype=index_dtype(n)), (passes, n))
    return rng.permuted(rows, axis=1).ravel()[:count]  # one C call, however many passes


class ConcatDataset(Dataset):
    """All items of every dataset, one after another."""

    def __init__(self, datasets):
        if not datasets:
            raise ValueError('ConcatDataset needs at least one dataset')
        self.datasets = list(datasets)
        self.cumulative = np.cumsum([len(d) for d in self.datasets])

    def __len__(self):
        return int(self.cumulative[-1])

    def locate(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self.cumulative, index, side='right'))
        return k, int(index - (self.cumulative[k - 1] if k else 0))

    def __getitem__(self, index):
        k, local = self.locate(index)
        return self.datasets[k][local]

    def meta(self, index):
        k, local = self.locate(index)
        return forward_meta(self.datasets[k], local)

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)

    def lengths(self) -> np.ndarray:
        return np.concatenate([member_lengths(d) for d in self.datasets]).astype(np.int64)


class SubsetDataset(Dataset):
    """A seeded random part of a dataset: `portion` of it (0 < portion <= 1) or `num_samples` items.

    The chosen indices are sorted, so a subset keeps its source's order; with
    reshuffle_each_epoch=True another subset of the same size is drawn each epoch from (seed, epoch).
    """

    def __init__(self, dataset, portion: float | None = None, num_samples: int | None = None, seed: int = 42,
                 reshuffle_each_epoch: bool = False):
        if (portion is None) == (num_samples is None):
            raise ValueError('SubsetDataset needs exactly one of portion or num_samples')
        if portion is not None:
            if not 0 < portion <= 1:
                raise ValueError(f"portion must be in (0, 1], got {portion}")
            # at least one item: a tiny source must not vanish from a mixture without a word
            num_samples = min(len(dataset), max(1, round(len(dataset) * portion)))
        if not 0 <= num_samples <= len(dataset):
            raise ValueError(f"num_samples={num_samples} is not within the dataset's {len(dataset)} items")
        self.dataset, self.num_samples, self.seed = dataset, num_samples, seed
        self.datasets = [dataset]  # uniform with the other mixtures (skipped-sample reports walk it)
        self.reshuffle_each_epoch = reshuffle_each_epoch
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = seeded_rng(self.seed, epoch if self.reshuffle_each_epoch else 0)
        n = len(self.dataset)
        self.indices = np.sort(rng.choice(n, size=self.num_samples, replace=False)).astype(index_dtype(n))
        forward_set_epoch(self.datasets, epoch)

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def meta(self, index):
        return forward_meta(self.dataset, int(self.indices[index]))

    def lengths(self) -> np.ndarray:
        return member_lengths(self.dataset)[self.indices]


class HoldoutSplit(Dataset):
    """The 'train' or 'test' part of a dataset without an official split (VG regions, LLaVA instructions).

    A sample belongs to 'test' when the hash of (seed, meta(i)[key]) falls below `portion`, so the
    split depends only on the key's value: stable when the file grows or is reordered, the same on
    every machine, and with key='image_id' every sample of one image lands on the same side (no
    image is seen in training and at test). Reads `meta`, never images.
    """

    def __init__(self, dataset, portion: float = 0.01, part: str = 'train', key: str = 'image_id', seed: int = 0):
        if part not in ('train', 'test'):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        if not 0 < portion < 1:
            raise ValueError(f"portion must be in (0, 1), got {portion}")
        if not hasattr(dataset, 'meta'):
            raise ValueError(f"HoldoutSplit needs a dataset with meta(); {type(dataset).__name__} has none")
        self.dataset, self.datasets = dataset, [dataset]
        in_test = np.zeros(len(dataset), dtype=bool)
        for i in range(len(dataset)):
            meta = dataset.meta(i)
            if key not in meta:
                raise ValueError(f"HoldoutSplit: sample {i} has no '{key}' in its meta ({sorted(meta)})")
            digest = hashlib.sha1(f'{seed}:{meta[key]}'.encode()).digest()
            in_test[i] = int.from_bytes(digest[:8], 'big') / 2 ** 64 < portion
        self.indices = np.flatnonzero(in_test if part == 'test' else ~in_test).astype(index_dtype(len(dataset)))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def meta(self, index):
        return self.dataset.meta(int(self.indices[index]))

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)

    def lengths(self) -> np.ndarray:
        return member_lengths(self.dataset)[self.indices]


class InterleaveDataset(Dataset):
    """Each position draws its source with `probabilities`; each source is read through seeded permutations.

    The epoch's table is a prefix of one seeded stream: position t draws its source k independently
    (probabilities), and the j-th draw of source k reads item j of a chain of permutations of
    source k (a new permutation each time the source has been read through). The stream depends
    on (seed, epoch) with reshuffle_each_epoch=True, on (seed, 0) otherwise. How long the prefix is:

      num_samples=N      exactly N positions (the Shikra-style fixed epoch); a source drawn more than
                         its size cycles through further permutations. When set, it overrides
                         `stopping_strategy` (which is then ignored).
      'first_exhausted'  (default) up to the first draw of a source that has been read through: no
                         item repeats; the epoch is about min_k(len_k / p_k) long.
      'all_exhausted'    up to the draw that completes the last source's first pass: every item is
                         seen, small sources repeat; the epoch is about max_k(len_k / p_k) long, which
                         for a VG-region-dominated mixture is tens of millions: prefer num_samples.

    The stopping length is fixed at epoch 0; later epochs read that many positions of their own
    stream (a source may then cycle into its next permutation a little early; nothing is cut).
    The table is two numpy arrays, `source_ids` and `local_indices` (`table` stacks them).
    """

    def __init__(self, datasets, probabilities=None, seed: int = 42, stopping_strategy: str | None = None,
                 reshuffle_each_epoch: bool = False, num_samples: int | None = None):
        stopping_strategy = stopping_strategy or 'first_exhausted'
        if stopping_strategy not in ('first_exhausted', 'all_exhausted'):
            raise ValueError(f"unknown stopping_strategy {stopping_strategy!r}")
        if num_samples is not None and (not isinstance(num_samples, (int, np.integer)) or num_samples < 0):
            raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
        self.datasets = list(datasets)
        n = len(self.datasets)
        if n >= 2 ** 15:
            raise ValueError(f"InterleaveDataset: {n} sources; source ids are stored as int16")
        probabilities = list(probabilities) if probabilities is not None else [1.0 / n] * n
        if len(probabilities) != n or any(p < 0 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
            raise ValueError(f"probabilities {probabilities} must be {n} non-negative numbers summing to 1")
        for k, d in enumerate(self.datasets):
            if len(d) == 0 and probabilities[k] > 0:
                logger.warning('InterleaveDataset: member %d (%s) is empty and is left out of the mixture',
                               k, getattr(d, 'name', type(d).__name__))
        self.probabilities, self.seed, self.stopping_strategy = probabilities, seed, stopping_strategy
        self.num_samples, self.reshuffle_each_epoch = num_samples, reshuffle_each_epoch
        self.sizes = np.array([len(d) for d in self.datasets], dtype=np.int64)
        self.active = np.flatnonzero((np.asarray(probabilities) > 0) & (self.sizes > 0))
        if not len(self.active):
            raise ValueError('InterleaveDataset: every source is empty or has probability 0')
        weights = np.asarray(probabilities, dtype=np.float64)[self.active]
        self._cdf = np.cumsum(weights / weights.sum())
        self._cdf[-1] = 1.0  # rounding must never send a uniform draw past the last source
        self._stream = None  # the epoch whose stream the table holds
        self._build(0, num_samples)

    # -- the table -----------------------------------------------------------------------------
    def _stream_epoch(self, epoch: int) -> int:
        return epoch if self.reshuffle_each_epoch else 0

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` source positions in `self.active` (0..K-1): uniforms against the cumulative weights.

        Consecutive calls continue one stream of uniforms, so drawing in chunks equals drawing at once.
        """
        return np.searchsorted(self._cdf, rng.random(count), side='right').astype(np.int16)

    def _stopping_prefix(self, rng: np.random.Generator) -> np.ndarray:
        """The drawn sources up to where `stopping_strategy` ends the epoch (drawn in growing chunks)."""
        sizes = self.sizes[self.active]
        weights = np.diff(self._cdf, prepend=0.0)
        first = self.stopping_strategy == 'first_exhausted'
        guess = (sizes / weights).min() if first else (sizes / weights).max()
        drawn = self._draw(rng, int(1.2 * guess) + 64)
        while True:
            ends = []
            for a, size in enumerate(sizes):
                positions = np.flatnonzero(drawn == a)
                if first and len(positions) > size:
                    ends.append(int(positions[size]))  # this draw finds source a read through: not kept
                elif not first:
                    ends.append(int(positions[size - 1]) + 1 if len(positions) >= size else None)
            if first and ends:
                return drawn[:min(ends)]
            if not first and None not in ends:
                return drawn[:max(ends)]
            drawn = np.concatenate([drawn, self._draw(rng, len(drawn))])

    def _build(self, epoch: int, length: int | None) -> None:
        stream = self._stream_epoch(epoch)
        if stream == self._stream:
            return
        rng = seeded_rng(self.seed, stream, 0)
        drawn = self._stopping_prefix(rng) if length is None else self._draw(rng, length)
        counts = np.bincount(drawn, minlength=len(self.active))
        order = np.argsort(drawn, kind='stable')  # positions grouped by source, in table order
        local = np.empty(len(drawn), dtype=index_dtype(int(self.sizes.max())))
        start = 0
        for a, k in enumerate(self.active):
            count = int(counts[a])
            # one permutation stream per source, keyed by the source's own id
            local[order[start:start + count]] = permutation_stream(int(self.sizes[k]), count,
                                                                   seeded_rng(self.seed, stream, 1 + int(k)))
            start += count
        self.source_ids = self.active.astype(np.int16)[drawn]
        self.local_indices = local
        self._stream = stream

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)
        self._build(epoch, len(self))  # the order may change, the length may not

    @property
    def table(self) -> np.ndarray:
        """(len, 2) array of (source id, local index) rows."""
        return np.stack([self.source_ids.astype(self.local_indices.dtype), self.local_indices], axis=1)

    # -- access --------------------------------------------------------------------------------
    def __len__(self):
        return len(self.source_ids)

    def __getitem__(self, index):
        return self.datasets[int(self.source_ids[index])][int(self.local_indices[index])]

    def meta(self, index):
        return forward_meta(self.datasets[int(self.source_ids[index])], int(self.local_indices[index]))

    def lengths(self) -> np.ndarray:
        out = np.zeros(len(self), dtype=np.int64)
        for k in self.active:
            at = self.source_ids == k
            out[at] = member_lengths(self.datasets[k])[self.local_indices[at]]
        return out
