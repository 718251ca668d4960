"""ISEKAI evaluation sets (ISEKAI-10, ISEKAI-pair of the LCL paper) as N-way K-shot episodes.

Files: `image_folder` with the images, and `data_file`, JSON Lines (the release names it `.json`), one record
per query with the published fields, misspellings included:
  {"image_name": str, "positive_list": [str, ...], "negative_list": [str, ...],
   "positive_promt": str, "negative_promt": str, "label_name": str}
`image_name` is the query image, the lists hold support images of the two concepts, the prompts are the names
shown for them and `label_name` is the query's answer. Image names are relative to `image_folder`.

Episode of record i (`shot` = K, `way` = N):
- support: the first K images of positive_list named positive_promt, the first K of negative_list named
  negative_promt (the release's choice: the eval set is the same in every run), and for N > 2 the first K
  images of N-2 further concepts drawn from the other records (a concept is a shown name; its images are those
  of every list it names, in file order), chosen with episode_rng(seed, epoch, i);
- the N*K support examples in an order shuffled by the same Generator; the query last;
- meta: positive = label_name; negatives = the other shown names (for label_name == negative_promt, compared
  case-insensitively, the positive prompt is the wrong answer).
Validation at load names file:line: bad JSON, missing / mistyped fields, fewer than K images in a list, a
label_name that is neither prompt, and (check_images=True) every image an episode uses missing from the folder.
"""
from __future__ import annotations

import os

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

FIELDS = {'image_name': str, 'positive_list': list, 'negative_list': list, 'positive_promt': str,
          'negative_promt': str, 'label_name': str}


def _key(name: str) -> str:
    return ' '.join(name.lower().split())


@DATASETS.register_module()
class ISEKAIDataset(EpisodeItems, Dataset):
    """ISEKAI N-way K-shot episodes (module docstring); `len` = number of records."""

    epoch: int = 0

    def __init__(self, data_file: str, image_folder: str, shot: int = 2, way: int = 2, seed: int = 0,
                 check_images: bool = True, phrases: dict | None = None):
        self.shot = check_int('ISEKAIDataset', 'shot', shot, 1)
        self.way = check_int('ISEKAIDataset', 'way', way, 2)
        self.seed = check_int('ISEKAIDataset', 'seed', seed, 0)
        check_path(data_file, 'data_file')
        check_path(image_folder, 'image_folder', kind='folder')
        self.data_file, self.image_folder, self.phrases = data_file, image_folder, episode_phrases(phrases)
        self.records = read_jsonl(data_file)
        if not self.records:
            raise DataFileError(f"{data_file}: no records")
        self.concepts = {}  # normalised name -> (shown name, [image names]) in file order
        for record in self.records:
            where = record['__source__']
            require_fields(record, FIELDS, where)
            for key in ('positive_list', 'negative_list'):
                if len(record[key]) < self.shot:
                    raise DataFileError(f"{where}: '{key}' has {len(record[key])} image(s), fewer than "
                                        f"shot={self.shot}")
            if _key(record['positive_promt']) == _key(record['negative_promt']):
                raise DataFileError(f"{where}: positive_promt and negative_promt are the same name "
                                    f"{record['positive_promt']!r}")
            if _key(record['label_name']) not in (_key(record['positive_promt']), _key(record['negative_promt'])):
                raise DataFileError(f"{where}: label_name {record['label_name']!r} is neither positive_promt "
                                    f"{record['positive_promt']!r} nor negative_promt {record['negative_promt']!r}")
            for prompt, images in (('positive_promt', 'positive_list'), ('negative_promt', 'negative_list')):
                _, pool = self.concepts.setdefault(_key(record[prompt]), (record[prompt], []))
                pool.extend(p for p in record[images] if p not in pool)
        if self.way > 2 and len(self.concepts) < self.way:
            raise DataFileError(f"{data_file}: way={self.way} needs {self.way} concepts, the file names "
                                f"{len(self.concepts)}: {sorted(n for n, _ in self.concepts.values())}")
        if check_images:
            for index in range(len(self.records)):
                episode = self.episode(index)
                for path in [episode.query, *(p for p, _ in episode.support)]:
                    if not os.path.isfile(path):
                        raise DataFileError(f"{self.records[index]['__source__']}: image "
                                            f"{os.path.relpath(path, image_folder)!r} not found in image_folder "
                                            f"{image_folder}")

    def __len__(self):
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _path(self, name: str) -> str:
        return os.path.join(self.image_folder, name)

    def episode(self, index: int) -> Episode:
        """The plan of episode `index` this epoch; reads no image."""
        if not 0 <= index < len(self.records):
            raise IndexError(f"ISEKAIDataset index {index} out of range for {len(self.records)} records")
        record, k = self.records[index], self.shot
        rng = episode_rng('isekai', self.seed, self.epoch, index)
        pos, neg = record['positive_promt'], record['negative_promt']
        groups = [(pos, record['positive_list'][:k]), (neg, record['negative_list'][:k])]
        if self.way > 2:
            shown = {_key(pos), _key(neg)}
            candidates = [c for c in self.concepts if c not in shown and len(self.concepts[c][1]) >= k]
            if len(candidates) < self.way - 2:
                raise DataFileError(f"{record['__source__']}: way={self.way} shot={k} needs {self.way - 2} more "
                                    f"concept(s) with >= {k} images, found {len(candidates)}")
            for c in rng.choice(len(candidates), size=self.way - 2, replace=False):
                name, pool = self.concepts[candidates[int(c)]]
                groups.append((name, pool[:k]))
        support = [(self._path(p), name) for name, paths in groups for p in paths]
        support = [support[int(j)] for j in rng.permutation(len(support))]
        answer = record['label_name']
        others = [name for name, _ in groups if _key(name) != _key(answer)]
        return Episode(support=support, query=self._path(record['image_name']), answer=answer, others=others,
                       shot=k, source=f"{record['__source__']}:{record['image_name']}")

    def meta(self, index: int) -> dict:
        """{'positive', 'negative', 'negatives', 'shot', 'way', 'source'}; reads no image."""
        return self.episode(index).meta()

    def __getitem__(self, index: int) -> dict:
        return render_episode(self.episode(index), self.phrases)
