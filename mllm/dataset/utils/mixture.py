"""Dataset mixtures: concatenation, seeded probability-weighted interleaving, seeded subsets, and a
held-out split for sources that ship no official one.

Each holds already-built datasets and maps a global index to (dataset, local index) with a table
computed from the seed, so the mixture is the same on every rank and every run with one seed.
`set_epoch(epoch)` (called by `EpochCallback` at the start of each training epoch) redraws the
interleaving order and the subsets from `seed + epoch` when `reshuffle_each_epoch` is set, so long
runs see other samples of a subset each epoch while every rank still agrees on the table.
Lengths never change between epochs (the sampler and the LR schedule rely on them).
`meta(index)` is forwarded to the member dataset, so metrics see each sample's facts.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import random

from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def forward_set_epoch(datasets, epoch: int) -> None:
    for d in datasets:
        if hasattr(d, 'set_epoch'):
            d.set_epoch(epoch)


def forward_meta(dataset, index: int) -> dict:
    return dataset.meta(index) if hasattr(dataset, 'meta') else {}


class ConcatDataset(Dataset):
    """All items of every dataset, one after another."""

    def __init__(self, datasets):
        if not datasets:
            raise ValueError('ConcatDataset needs at least one dataset')
        self.datasets = list(datasets)
        self.cumulative = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative.append(total)

    def __len__(self):
        return self.cumulative[-1]

    def locate(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = bisect.bisect_right(self.cumulative, index)
        return k, index - (self.cumulative[k - 1] if k else 0)

    def __getitem__(self, index):
        k, local = self.locate(index)
        return self.datasets[k][local]

    def meta(self, index):
        k, local = self.locate(index)
        return forward_meta(self.datasets[k], local)

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)


class SubsetDataset(Dataset):
    """A seeded random part of a dataset: `portion` of it (0 < portion <= 1) or `num_samples` items.

    The chosen indices are sorted, so a subset keeps its source's order; with
    reshuffle_each_epoch=True another subset of the same size is drawn each epoch.
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
        seed = self.seed + (epoch if self.reshuffle_each_epoch else 0)
        self.indices = sorted(random.Random(seed).sample(range(len(self.dataset)), self.num_samples))
        forward_set_epoch(self.datasets, epoch)

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def meta(self, index):
        return forward_meta(self.dataset, self.indices[index])


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
        self.indices = []
        for i in range(len(dataset)):
            meta = dataset.meta(i)
            if key not in meta:
                raise ValueError(f"HoldoutSplit: sample {i} has no '{key}' in its meta ({sorted(meta)})")
            digest = hashlib.sha1(f'{seed}:{meta[key]}'.encode()).digest()
            in_test = int.from_bytes(digest[:8], 'big') / 2 ** 64 < portion
            if in_test == (part == 'test'):
                self.indices.append(i)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def meta(self, index):
        return self.dataset.meta(self.indices[index])

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)


class InterleaveDataset(Dataset):
    """Draw the source of each position with `probabilities` (seeded), reading each source in order.

    stopping_strategy='first_exhausted' stops when any source runs out (no item repeats);
    'all_exhausted' restarts exhausted sources until every one has been seen once (oversampling).
    """

    def __init__(self, datasets, probabilities=None, seed: int = 42, stopping_strategy: str = 'first_exhausted',
                 reshuffle_each_epoch: bool = False):
        if stopping_strategy not in ('first_exhausted', 'all_exhausted'):
            raise ValueError(f"unknown stopping_strategy {stopping_strategy!r}")
        self.datasets = list(datasets)
        n = len(self.datasets)
        probabilities = probabilities or [1.0 / n] * n
        if len(probabilities) != n or any(p < 0 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
            raise ValueError(f"probabilities {probabilities} must be {n} non-negative numbers summing to 1")
        for k, d in enumerate(self.datasets):
            if len(d) == 0 and probabilities[k] > 0:
                logger.warning('InterleaveDataset: member %d (%s) is empty and is left out of the mixture',
                               k, getattr(d, 'name', type(d).__name__))
        self.probabilities, self.seed, self.stopping_strategy = probabilities, seed, stopping_strategy
        self.reshuffle_each_epoch = reshuffle_each_epoch
        self.table = self._draw_table(seed)

    def set_epoch(self, epoch: int) -> None:
        forward_set_epoch(self.datasets, epoch)
        if self.reshuffle_each_epoch:
            table = self._draw_table(self.seed + epoch)
            # The order changes, the length may not: trim or cycle to the first epoch's length.
            self.table = [table[i % len(table)] for i in range(len(self.table))]

    def _draw_table(self, seed: int) -> list[tuple[int, int]]:
        n, probabilities, stopping_strategy = len(self.datasets), self.probabilities, self.stopping_strategy
        rng = random.Random(seed)
        cursors, seen_all = [0] * n, [len(d) == 0 for d in self.datasets]
        table = []
        sources = [k for k in range(n) if probabilities[k] > 0 and len(self.datasets[k]) > 0]
        if not sources:
            raise ValueError('InterleaveDataset: every source is empty or has probability 0')
        weights = [probabilities[k] for k in sources]
        while True:
            k = rng.choices(sources, weights)[0]
            if cursors[k] >= len(self.datasets[k]):
                seen_all[k] = True
                if stopping_strategy == 'first_exhausted' or all(seen_all[s] for s in sources):
                    break
                cursors[k] = 0
            table.append((k, cursors[k]))
            cursors[k] += 1
            if stopping_strategy == 'all_exhausted' and all(
                    seen_all[s] or cursors[s] >= len(self.datasets[s]) for s in sources):
                break
        return table

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        k, local = self.table[index]
        return self.datasets[k][local]

    def meta(self, index):
        k, local = self.table[index]
        return forward_meta(self.datasets[k], local)
