"""Question templates: JSON lists of phrasings, checked at load time, drawn with a seeded RNG.

The phrasing of a sample depends on (seed, epoch, index) only, so it does not depend on access
order or worker layout, yet a sample is asked in other words in other epochs.
"""
from __future__ import annotations

import json
import os
import random

from ..root import IMAGE_PLACEHOLDER

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'templates')


class QuestionTemplates:
    """A list of phrasings; each must contain every placeholder in `required`."""

    def __init__(self, path: str, required=(IMAGE_PLACEHOLDER,), seed: int = 0):
        if not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(TEMPLATE_DIR, path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"question template file not found: {path}")
        with open(path, encoding='utf-8') as f:
            templates = json.load(f)
        if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
            raise ValueError(f"{path}: expected a non-empty JSON list of strings")
        for k, template in enumerate(templates):
            missing = [p for p in required if p not in template]
            if missing:
                raise ValueError(f"{path}: template {k} {template!r} lacks placeholder(s) {missing}")
        self.path, self.templates, self.seed = path, templates, seed

    def get(self, index: int, epoch: int = 0) -> str:
        """The phrasing of sample `index` in `epoch`."""
        if epoch == 0:  # epoch 0 keeps the choice made before epochs counted (same prompts as then)
            rng = random.Random(self.seed * 1_000_003 + index)
        else:  # a string seed is hashed with SHA-512: stable across processes and runs
            rng = random.Random(f'question-template:{self.seed}:{epoch}:{index}')
        return rng.choice(self.templates)
