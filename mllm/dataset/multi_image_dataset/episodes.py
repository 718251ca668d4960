"""What the link-context-learning episode datasets (ISEKAI, ImageNet-style LCL) share.

- `episode_rng(tag, seed, epoch, index)`: a numpy Generator that depends on those four values only (no global
  RNG, no access order, no worker layout).
- `Episode`: the plan of one episode (support (path, name) pairs in the order shown, the query path, its answer
  name and the other support concepts), built without reading an image; `meta()` is what the LCL metric reads.
- `render_episode`: the canonical multi-image item (DESIGN.md section 4, as MIMICITDataset): one human/gpt
  exchange per support example, each with its own `<image>` and `'in_context': True`, the query's exchange
  last; `'image'` lists the images in the order of their `<image>` placeholders; `'target'` is {}.
The phrasings are ours (EPISODE_PHRASES); a dataset takes `phrases=dict(...)` to change any of them. The
answer names the concept in quotes ('There is "X" in the image.'), which LCLComputeMetrics normalises away.
A question's image comes first, unless the question holds `<image>` once to say where it goes
('What is this? <image>': the image then sits next to the answer that names it).
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..root import IMAGE_PLACEHOLDER
from ..utils.io import DataFileError, read_image

LABEL = '<label>'
EPISODE_PHRASES = {
    'support_question': 'What is shown in this image?',
    'query_question': 'Going by the examples above, what is shown in this image?',
    'answer': f'There is "{LABEL}" in the image.',
}


def episode_phrases(phrases: dict | None) -> dict:
    """EPISODE_PHRASES with `phrases` overriding some of them; the answer must hold `<label>`."""
    merged = dict(EPISODE_PHRASES, **(phrases or {}))
    unknown = sorted(set(merged) - set(EPISODE_PHRASES))
    if unknown:
        raise ValueError(f"phrases: unknown key(s) {unknown}; known: {sorted(EPISODE_PHRASES)}")
    for key, value in merged.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"phrases[{key!r}] must be a non-empty string, got {value!r}")
        if key == 'answer' and IMAGE_PLACEHOLDER in value:
            raise ValueError(f"phrases['answer'] must not hold {IMAGE_PLACEHOLDER}: the images go in the questions")
        if value.count(IMAGE_PLACEHOLDER) > 1:
            raise ValueError(f"phrases[{key!r}] holds {IMAGE_PLACEHOLDER} {value.count(IMAGE_PLACEHOLDER)} times: "
                             f"a question shows one image (at its start unless placed once)")
    if LABEL not in merged['answer']:
        raise ValueError(f"phrases['answer'] must hold {LABEL}, got {merged['answer']!r}")
    return merged


def question_with_image(question: str) -> str:
    """The human turn of an example: `question` with its image where it places `<image>`, else first."""
    return question if IMAGE_PLACEHOLDER in question else IMAGE_PLACEHOLDER + question


def episode_rng(tag: str, seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator of episode `index` in `epoch`; `tag` keeps datasets' streams apart (crc32, stable)."""
    for name, value in (('seed', seed), ('epoch', epoch), ('index', index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"episode_rng: {name} must be an integer >= 0, got {value!r}")
    return np.random.default_rng([zlib.crc32(tag.encode('utf-8')), int(seed), int(epoch), int(index)])


@dataclass
class Episode:
    """One episode, as paths and names; `source` names the file:line it came from."""

    support: list          # [(image_path, shown_name), ...] in the order shown
    query: str             # image path of the query
    answer: str            # the name the query must be given (one of the shown names)
    others: list           # the other shown names (the wrong answers), in a fixed order
    shot: int              # support examples per concept
    source: str
    extra: dict = field(default_factory=dict)  # dataset-specific meta (class ids, real names, policy)

    def with_shots(self, shot: int) -> Episode:
        """The same episode with only the first `shot` support examples of each concept (order kept)."""
        seen: dict = {}
        support = []
        for path, name in self.support:
            seen[name] = seen.get(name, 0) + 1
            if seen[name] <= shot:
                support.append((path, name))
        return dataclasses.replace(self, support=support, shot=shot,
                                   extra=dict(self.extra, shot_reduced_from=self.shot))

    def meta(self) -> dict:
        return {'positive': self.answer, 'negative': self.others[0] if len(self.others) == 1 else None,
                'negatives': list(self.others), 'shot': self.shot, 'way': 1 + len(self.others),
                'source': self.source, **self.extra}


def load_image(path: str, source: str):
    """`path` as an RGB image; a missing or unreadable file names the episode's source."""
    try:
        return read_image(path)
    except DataFileError as e:
        raise DataFileError(f"{source}: {e}") from None


def render_episode(episode: Episode, phrases: dict, key_text: dict | None = None) -> dict:
    """The canonical item of `episode` (module docstring); reads every image. With `key_text` (shown name -> text)
    an example's text key stands where its image would go and no image is read: a text-only item
    (RecallEpisodeDataset)."""
    images, conversations = [], []
    turns = [(path, name, phrases['support_question'], True) for path, name in episode.support]
    turns.append((episode.query, episode.answer, phrases['query_question'], False))
    for path, name, question, in_context in turns:
        human = question_with_image(question)
        if key_text is None:
            images.append(load_image(path, episode.source))
        else:
            human = human.replace(IMAGE_PLACEHOLDER, key_text[name])
        extra = {'in_context': True} if in_context else {}
        conversations.append({'from': 'human', 'value': human, 'boxes_seq': None, 'points_seq': None, **extra})
        conversations.append({'from': 'gpt', 'value': phrases['answer'].replace(LABEL, name), 'boxes_seq': None,
                              'points_seq': None, **extra})
    return {'image': images, 'target': {}, 'conversations': conversations, 'source': episode.source}


def check_int(owner: str, name: str, value, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def require_fields(record: dict, fields: dict, where: str) -> None:
    """Raise DataFileError naming `where` unless every field is present with its type
    (`str`: a non-empty string; `list`: a list of non-empty strings)."""
    missing = [k for k in fields if k not in record]
    if missing:
        present = sorted(k for k in record if k != '__source__')
        raise DataFileError(f"{where}: missing field(s) {missing} (has {present})")
    for key, kind in fields.items():
        value = record[key]
        if kind is str and not (isinstance(value, str) and value.strip()):
            raise DataFileError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
        if kind is list and not (isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)):
            raise DataFileError(f"{where}: '{key}' must be a list of non-empty strings, got {value!r}")


class EpisodeItems:
    """Mixin of the episode datasets: `item_with_shots(index, shot)`, the renderer's way to fit a token budget."""

    def item_with_shots(self, index: int, shot: int) -> dict:
        return render_episode(self.episode(index).with_shots(shot), self.phrases)
