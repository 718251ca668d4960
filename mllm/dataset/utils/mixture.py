"""Dataset mixtures: concatenation and seeded, probability-weighted interleaving.

Both hold already-built datasets and map a global index to (dataset, local index) with a table
fixed at construction, so the mixture is the same on every rank and every run with one seed.
"""
from __future__ import annotations

import bisect
import random

from torch.utils.data import Dataset


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


class InterleaveDataset(Dataset):
    """Draw the source of each position with `probabilities` (seeded), reading each source in order.

    stopping_strategy='first_exhausted' stops when any source runs out (no item repeats);
    'all_exhausted' restarts exhausted sources until every one has been seen once (oversampling).
    """

    def __init__(self, datasets, probabilities=None, seed: int = 42, stopping_strategy: str = 'first_exhausted'):
        if stopping_strategy not in ('first_exhausted', 'all_exhausted'):
            raise ValueError(f"unknown stopping_strategy {stopping_strategy!r}")
        self.datasets = list(datasets)
        n = len(self.datasets)
        probabilities = probabilities or [1.0 / n] * n
        if len(probabilities) != n or any(p < 0 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
            raise ValueError(f"probabilities {probabilities} must be {n} non-negative numbers summing to 1")
        rng = random.Random(seed)
        cursors, seen_all = [0] * n, [len(d) == 0 for d in self.datasets]
        self.table = []
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
            self.table.append((k, cursors[k]))
            cursors[k] += 1
            if stopping_strategy == 'all_exhausted' and all(
                    seen_all[s] or cursors[s] >= len(self.datasets[s]) for s in sources):
                break

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        k, local = self.table[index]
        return self.datasets[k][local]
