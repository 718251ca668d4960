"""ImageNet-style link-context-learning episodes (LCL paper): 2-way training episodes and 2-way test episodes.

Files (JSON Lines, one class a line; class ids are strings such as "n01440764"; image paths relative to
`image_root`):
  training  {"class_id", "class_name", "samples": [path, ...], "neighbors": [[class_id, class_name, path], ...]}
            (`neighbors` ranked, most similar class first; every neighbour id must be a class of the file)
  test      {"class_id", "class_name", "context_samples": [path, ...], "test_samples": [path, ...]}

LCLEpisodeDataset (training): episode i is about class c = i mod #classes; `num_episodes` fixes the length
(default #classes). With g = episode_rng(seed, epoch, i):
  1. shot K by policy: '2way' and 'label_substitution' K = `shot`; '2way_random' K uniform on
     min_shot..max_shot; '2way_weight' P(K = k) proportional to exp(k / 2) on min_shot..max_shot.
  2. the negative class: one of c's neighbours, rank r (0-based, of n) with weight n - r (hard negatives);
  3. the query's class: c or the negative, each with probability 1/2;
  4. K distinct images of each class from its samples (K + 1 of the query's class: the query is never a
     support image), the 2K support examples in a shuffled order, the query last.
  'label_substitution': c's images are shown under a made-up lower-case name (`name_letters`, 4..8 random
  letters by default, never a real name of the episode) in support and answer; the negative keeps its name.
  `rename_prob` p (any policy, default 0): after the draws above, each of the episode's two concepts is shown
  under a fresh made-up name with probability p (support and answer; `meta` names the real -> shown pairs in
  'substituted'). The answer can then only come from the context, never from names learnt in training: what
  a model without a pretrained LM's copying ability needs to learn link-context use
  (benchmarks/lcl_reproduction.py). 'mix' (episodes interleaved with single-image data) is InterleaveDataset's
  job in the configs.
LCLTestEpisodeDataset: classes are paired in file order (0-1, 2-3, ...). Episode (c, j): support = the first
K context_samples of c and of its partner, shuffled by episode_rng(seed, epoch, index); query = test_samples[j]
of c (at most `samples_per_class` per class). Both datasets' `meta(i)` give positive (the answer), negative,
shot and the class ids, without reading an image.
Validation at load names file:line: bad JSON, missing / mistyped fields, duplicate or unknown class ids, a
class with too few images for the largest shot. A missing image is reported when its episode is built.
"""
from __future__ import annotations

import os
import string

import numpy as np
from torch.utils.data import Dataset

from ..root import DATASETS
from ..single_image_dataset.base import check_path
from ..utils.io import DataFileError, read_jsonl
from .episodes import (
    Episode,
    EpisodeItems,
    check_int,
    episode_phrases,
    episode_rng,
    render_episode,
    require_fields,
)

POLICIES = ('2way', '2way_random', '2way_weight', 'label_substitution')
TRAIN_FIELDS = {'class_id': str, 'class_name': str, 'samples': list}
TEST_FIELDS = {'class_id': str, 'class_name': str, 'context_samples': list, 'test_samples': list}


def shot_distribution(policy: str, shot: int, min_shot: int, max_shot: int) -> tuple[np.ndarray, np.ndarray]:
    """(shot counts, their probabilities) of `policy`."""
    if policy in ('2way', 'label_substitution'):
        return np.array([shot]), np.array([1.0])
    shots = np.arange(min_shot, max_shot + 1)
    weights = np.ones(len(shots)) if policy == '2way_random' else np.exp(shots / 2.0)
    return shots, weights / weights.sum()


def negative_weights(n: int) -> np.ndarray:
    """Probabilities of neighbour ranks 0..n-1: proportional to n - rank."""
    weights = np.arange(n, 0, -1, dtype=float)
    return weights / weights.sum()


def made_up_name(rng: np.random.Generator, taken: set, letters: tuple = (4, 8)) -> str:
    """A lower-case pseudo-word of `letters` = (fewest, most) random letters, not in `taken` (compared
    lower-cased)."""
    alphabet = np.array(list(string.ascii_lowercase))
    while True:
        name = ''.join(rng.choice(alphabet, size=int(rng.integers(letters[0], letters[1] + 1))))
        if name not in taken:
            return name


def check_name_letters(owner: str, value) -> tuple:
    """`value` as a (fewest, most) pair of letter counts, 1 <= fewest <= most."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value) and 1 <= value[0] <= value[1])
    if not ok:
        raise ValueError(f"{owner}: name_letters must be a (fewest, most) pair of letter counts with "
                         f"1 <= fewest <= most, got {value!r}")
    return int(value[0]), int(value[1])


def _read_classes(path: str, fields: dict) -> list[dict]:
    records = read_jsonl(path)
    if not records:
        raise DataFileError(f"{path}: no records")
    seen = {}
    for record in records:
        where = record['__source__']
        require_fields(record, fields, where)
        cid = record['class_id']
        if cid in seen:
            raise DataFileError(f"{where}: class_id {cid!r} already given at {seen[cid]}")
        seen[cid] = where
    return records


@DATASETS.register_module()
class LCLEpisodeDataset(EpisodeItems, Dataset):
    """2-way training episodes from the class-pairs file (module docstring)."""

    epoch: int = 0

    def __init__(self, data_file: str, image_root: str, policy: str = '2way', shot: int = 2, min_shot: int = 2,
                 max_shot: int = 16, num_episodes: int | None = None, seed: int = 0, phrases: dict | None = None,
                 rename_prob: float = 0.0, name_letters: tuple = (4, 8)):
        self.name_letters = check_name_letters('LCLEpisodeDataset', name_letters)
        if not (isinstance(rename_prob, (int, float)) and not isinstance(rename_prob, bool)
                and 0.0 <= rename_prob <= 1.0):
            raise ValueError(f"LCLEpisodeDataset: rename_prob must be a probability in [0, 1], got {rename_prob!r}")
        self.rename_prob = float(rename_prob)
        if policy not in POLICIES:
            raise ValueError(f"LCLEpisodeDataset: policy must be one of {list(POLICIES)}, got {policy!r} "
                             f"('mix' is an InterleaveDataset of episodes and other data in the config)")
        self.shot = check_int('LCLEpisodeDataset', 'shot', shot, 1)
        self.min_shot = check_int('LCLEpisodeDataset', 'min_shot', min_shot, 1)
        self.max_shot = check_int('LCLEpisodeDataset', 'max_shot', max_shot, self.min_shot)
        self.seed = check_int('LCLEpisodeDataset', 'seed', seed, 0)
        check_path(data_file, 'data_file')
        check_path(image_root, 'image_root', kind='folder')
        self.data_file, self.image_root, self.policy = data_file, image_root, policy
        self.phrases = episode_phrases(phrases)
        self.shots, self.shot_probs = shot_distribution(policy, self.shot, self.min_shot, self.max_shot)
        self.classes = _read_classes(data_file, TRAIN_FIELDS)
        self.index_of = {r['class_id']: k for k, r in enumerate(self.classes)}
        largest = int(self.shots.max())
        for record in self.classes:
            where = record['__source__']
            if len(record['samples']) < largest + 1:
                raise DataFileError(f"{where}: class {record['class_id']!r} has {len(record['samples'])} sample(s); "
                                    f"policy {policy!r} needs {largest + 1} (up to {largest} shots + the query)")
            if not _is_triples(record.get('neighbors')):
                raise DataFileError(f"{where}: 'neighbors' must be a list of [class_id, class_name, image_path] "
                                    f"string triples, got {record.get('neighbors')!r}")
            if not record['neighbors']:
                raise DataFileError(f"{where}: class {record['class_id']!r} has no neighbors to draw a negative from")
            for rank, (cid, _, _) in enumerate(record['neighbors']):
                if cid not in self.index_of:
                    raise DataFileError(f"{where}: neighbors[{rank}] names class_id {cid!r}, which is not a class "
                                        f"of {data_file}")
                if cid == record['class_id']:
                    raise DataFileError(f"{where}: neighbors[{rank}] is the class {cid!r} itself")
        self.num_episodes = len(self.classes) if num_episodes is None else \
            check_int('LCLEpisodeDataset', 'num_episodes', num_episodes, 1)

    def __len__(self):
        return self.num_episodes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def episode(self, index: int) -> Episode:
        """The plan of episode `index` this epoch; reads no image."""
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"LCLEpisodeDataset index {index} out of range for {self.num_episodes} episodes")
        rng = episode_rng(f'lcl-train:{self.policy}', self.seed, self.epoch, index)
        own = self.classes[index % len(self.classes)]
        k = int(rng.choice(self.shots, p=self.shot_probs))
        neighbors = own['neighbors']
        rank = int(rng.choice(len(neighbors), p=negative_weights(len(neighbors))))
        other = self.classes[self.index_of[neighbors[rank][0]]]
        query_is_own = bool(rng.integers(2) == 0)
        own_name = own['class_name']
        if self.policy == 'label_substitution':
            own_name = made_up_name(rng, {own['class_name'].lower(), other['class_name'].lower()},
                                    self.name_letters)
        groups, query = [], None
        for record, name, is_query in ((own, own_name, query_is_own), (other, other['class_name'], not query_is_own)):
            picks = rng.choice(len(record['samples']), size=k + is_query, replace=False)
            paths = [os.path.join(self.image_root, record['samples'][int(j)]) for j in picks]
            if is_query:
                query = paths.pop()
            groups.append((name, paths))
        support = [(p, name) for name, paths in groups for p in paths]
        support = [support[int(j)] for j in rng.permutation(len(support))]
        other_name = other['class_name']
        substituted = {own['class_name']: own_name} if self.policy == 'label_substitution' else {}
        if self.rename_prob > 0:  # drawn last, so rename_prob=0 leaves every other draw as it was
            renamed, taken = {}, {own['class_name'].lower(), other_name.lower(), own_name.lower()}
            for real, name in ((own['class_name'], own_name), (other['class_name'], other_name)):
                if rng.random() < self.rename_prob:
                    renamed[name] = substituted[real] = made_up_name(rng, taken, self.name_letters)
                    taken.add(renamed[name])
            support = [(p, renamed.get(name, name)) for p, name in support]
            own_name, other_name = renamed.get(own_name, own_name), renamed.get(other_name, other_name)
        answer, wrong = (own_name, other_name) if query_is_own else (other_name, own_name)
        extra = {'policy': self.policy, 'class_id': own['class_id'], 'negative_class_id': other['class_id'],
                 'negative_rank': rank, 'query_class_id': (own if query_is_own else other)['class_id']}
        if substituted:
            extra['substituted'] = substituted
        return Episode(support=support, query=query, answer=answer, others=[wrong], shot=k,
                       source=f"{own['__source__']}:{own['class_id']}", extra=extra)

    def meta(self, index: int) -> dict:
        return self.episode(index).meta()

    def __getitem__(self, index: int) -> dict:
        return render_episode(self.episode(index), self.phrases)


def _is_triples(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, list) and len(t) == 3 and all(isinstance(v, str) and v.strip() for v in t) for t in value)


@DATASETS.register_module()
class LCLTestEpisodeDataset(EpisodeItems, Dataset):
    """2-way test episodes from (class_id, class_name, context_samples, test_samples) records."""

    epoch: int = 0

    def __init__(self, data_file: str, image_root: str, shot: int = 2, samples_per_class: int | None = None,
                 seed: int = 0, phrases: dict | None = None):
        self.shot = check_int('LCLTestEpisodeDataset', 'shot', shot, 1)
        self.seed = check_int('LCLTestEpisodeDataset', 'seed', seed, 0)
        if samples_per_class is not None:
            check_int('LCLTestEpisodeDataset', 'samples_per_class', samples_per_class, 1)
        check_path(data_file, 'data_file')
        check_path(image_root, 'image_root', kind='folder')
        self.data_file, self.image_root, self.phrases = data_file, image_root, episode_phrases(phrases)
        self.classes = _read_classes(data_file, TEST_FIELDS)
        if len(self.classes) % 2:
            raise DataFileError(f"{data_file}: {len(self.classes)} classes; 2-way test episodes pair classes in "
                                f"file order (0-1, 2-3, ...), so the count must be even")
        for record in self.classes:
            if len(record['context_samples']) < self.shot:
                raise DataFileError(f"{record['__source__']}: class {record['class_id']!r} has "
                                    f"{len(record['context_samples'])} context_samples, fewer than shot={self.shot}")
        self.queries = [(c, j) for c, record in enumerate(self.classes)
                        for j in range(min(len(record['test_samples']), samples_per_class or 1 << 62))]

    def __len__(self):
        return len(self.queries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def episode(self, index: int) -> Episode:
        if not 0 <= index < len(self.queries):
            raise IndexError(f"LCLTestEpisodeDataset index {index} out of range for {len(self.queries)} episodes")
        c, j = self.queries[index]
        own, other = self.classes[c], self.classes[c ^ 1]
        groups = [(r['class_name'], r['context_samples'][:self.shot]) for r in (own, other)]
        support = [(os.path.join(self.image_root, p), name) for name, paths in groups for p in paths]
        rng = episode_rng('lcl-test', self.seed, self.epoch, index)
        support = [support[int(k)] for k in rng.permutation(len(support))]
        return Episode(support=support, query=os.path.join(self.image_root, own['test_samples'][j]),
                       answer=own['class_name'], others=[other['class_name']], shot=self.shot,
                       source=f"{own['__source__']}:{own['class_id']}:test_samples[{j}]",
                       extra={'class_id': own['class_id'], 'negative_class_id': other['class_id']})

    def meta(self, index: int) -> dict:
        return self.episode(index).meta()

    def __getitem__(self, index: int) -> dict:
        return render_episode(self.episode(index), self.phrases)
