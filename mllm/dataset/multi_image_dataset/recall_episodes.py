"""Text-only link-context warm-up episodes: LCL's episode plans with every image replaced by a key token.

`RecallEpisodeDataset` takes the plans of `LCLEpisodeDataset` (same file, policies, shots, renaming, seeds) and
renders each example's image as a KEY: an upper-case letter drawn afresh per concept in every episode, written
`key_repeat` times between `key_wrap` where the model's image tokens would go. For the tiny LCL model
(`<im_start>` + 4 `<im_patch>` + `<im_end>`) a support turn reads

    human: <im_start>KKKK<im_end>What is this?     gpt: "abc".

So the query is answered by finding the support example with the same key and copying its name: an exact-match
version of the link-context task, solvable without images. It is meant to give a language model from random
weights the match-and-copy (induction-style) circuit that the paper's LCL inherits from Vicuna's pretraining, and
that a tiny LM does not form on image features within the CPU budget (benchmarks/lcl_matching_probe.py; how far
config/lcl_cpu/lm_warmup.py gets is in docs/notes.md). No image is read; an item is text-only (`'image': []`).
"""
from __future__ import annotations

import string

from ..root import DATASETS
from .episodes import Episode, check_int, episode_rng, render_episode
from .lcl_episodes import LCLEpisodeDataset


@DATASETS.register_module()
class RecallEpisodeDataset(LCLEpisodeDataset):
    """LCLEpisodeDataset's episodes with key tokens instead of images (module docstring)."""

    def __init__(self, data_file: str, image_root: str, policy: str = '2way', shot: int = 2, min_shot: int = 2,
                 max_shot: int = 16, num_episodes: int | None = None, seed: int = 0, phrases: dict | None = None,
                 rename_prob: float = 0.0, name_letters: tuple = (4, 8), key_letters: str = string.ascii_uppercase,
                 key_repeat: int = 1, key_wrap: tuple = ('', '')):
        super().__init__(data_file, image_root, policy=policy, shot=shot, min_shot=min_shot, max_shot=max_shot,
                         num_episodes=num_episodes, seed=seed, phrases=phrases, rename_prob=rename_prob,
                         name_letters=name_letters)
        if not (isinstance(key_letters, str) and len(set(key_letters)) == len(key_letters) >= 2):
            raise ValueError(f"RecallEpisodeDataset: key_letters must be a string of >= 2 distinct characters, "
                             f"got {key_letters!r}")
        key_repeat = check_int('RecallEpisodeDataset', 'key_repeat', key_repeat, 1)
        if not (isinstance(key_wrap, (list, tuple)) and len(key_wrap) == 2
                and all(isinstance(w, str) for w in key_wrap)):
            raise ValueError(f"RecallEpisodeDataset: key_wrap must be two strings (before, after), got {key_wrap!r}")
        self.key_letters, self.key_repeat, self.key_wrap = key_letters, key_repeat, tuple(key_wrap)

    def keys(self, index: int, episode: Episode) -> dict:
        """Shown name -> its key letter in episode `index` (distinct letters, fresh per episode, seeded)."""
        names = sorted({name for _, name in episode.support})
        if len(names) > len(self.key_letters):
            raise ValueError(f"RecallEpisodeDataset: {len(names)} concepts in episode {index} but only "
                             f"{len(self.key_letters)} key letters")
        rng = episode_rng('recall-keys', self.seed, self.epoch, index)
        picks = rng.choice(len(self.key_letters), size=len(names), replace=False)
        return {name: self.key_letters[int(j)] for name, j in zip(names, picks, strict=True)}

    def render(self, index: int, episode: Episode) -> dict:
        before, after = self.key_wrap
        key_text = {name: before + key * self.key_repeat + after for name, key in self.keys(index, episode).items()}
        return render_episode(episode, self.phrases, key_text=key_text)

    def __getitem__(self, index: int) -> dict:
        return self.render(index, self.episode(index))

    def item_with_shots(self, index: int, shot: int) -> dict:
        return self.render(index, self.episode(index).with_shots(shot))
