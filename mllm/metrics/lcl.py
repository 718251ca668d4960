"""LCL metric (link-context learning): does the answer name the query's concept and not the other one?

A prediction and the names are normalised alike: lower case, quotes removed (" ' ` and their curly forms),
the phrases "there is" / "there's" / "in the image" removed, whitespace collapsed, trailing punctuation cut.
A sample is correct when the positive name occurs in the answer as a whole phrase and no negative name does;
a negative that is part of the positive name ("cat" in "wild cat") only counts where it stands outside the
positive's occurrences. Names come from `metas[i]` ('positive', 'negatives' or 'negative', 'shot', 'way':
the episode datasets' meta); without metas the reference text, normalised, is the positive and there are no
negatives (then only presence counts, and shot / chance level are unknown).
Scores: accuracy, correct, total, accuracy_<K>shot and count_<K>shot per shot count K, and chance_level: the
mean over samples of 1 / way, the accuracy of naming one of the shown concepts at random (0.5 for 2-way).
"""
from __future__ import annotations

import re

from ..dataset.root import METRICS

_QUOTES = re.compile(r'["\'`\u2018\u2019\u201c\u201d]')
_FILLERS = re.compile(r"\bthere\s+is\b|\bthere's\b|\bthere\u2019s\b|\bin\s+the\s+image\b")
_TRAILING = re.compile(r'[\s.,;:!?]+$')


def normalise(text: str) -> str:
    """Lower case, fillers and quotes removed, whitespace collapsed, no trailing punctuation."""
    text = _FILLERS.sub(' ', text.lower())  # before the quotes go: "there's" holds one
    text = _QUOTES.sub('', text)
    return _TRAILING.sub('', ' '.join(text.split()))


def _phrase(name: str) -> re.Pattern | None:
    name = normalise(name)
    return re.compile(r'(?<!\w)' + re.escape(name) + r'(?!\w)') if name else None


def judge(prediction: str, positive: str, negatives=()) -> dict:
    """The verdict of one answer: normalised answer, whether each name was found, correct."""
    answer = normalise(prediction)
    pos = _phrase(positive)
    if pos is None:
        raise ValueError(f"positive name {positive!r} is empty after normalisation")
    positive_found = bool(pos.search(answer))
    rest = pos.sub(' ', answer)  # searched for negatives that are part of the positive name
    found = []
    for name in negatives:
        neg = _phrase(name)
        if neg is None or normalise(name) == normalise(positive):
            continue
        if neg.search(rest if neg.search(normalise(positive)) else answer):
            found.append(name)
    return {'answer': answer, 'positive': positive, 'negatives': list(negatives), 'positive_found': positive_found,
            'negatives_found': found, 'correct': positive_found and not found}


@METRICS.register_module()
class LCLComputeMetrics:
    """Accuracy of link-context answers overall and per shot count (module docstring)."""

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        verdicts, by_shot, chances = [], {}, []
        for k, (pred, ref, meta) in enumerate(zip(predictions, references, metas, strict=True)):
            meta = meta or {}
            positive = meta.get('positive') or normalise(ref)
            negatives = meta.get('negatives')
            if negatives is None:
                negatives = [meta['negative']] if meta.get('negative') else []
            if not positive:
                raise ValueError(f"sample {k}: no positive name (meta {meta!r}, reference {ref!r})")
            verdict = judge(pred, positive, negatives)
            shot = meta.get('shot')
            verdict['shot'] = shot
            verdicts.append(verdict)
            if shot is not None:
                by_shot.setdefault(int(shot), []).append(verdict['correct'])
            way = meta.get('way') or (1 + len(negatives) if negatives else None)
            if way:
                chances.append(1.0 / way)
        n = len(verdicts)
        correct = sum(v['correct'] for v in verdicts)
        scores = {'accuracy': correct / n if n else 0.0, 'correct': correct, 'total': n}
        for shot in sorted(by_shot):
            hits = by_shot[shot]
            scores[f'accuracy_{shot}shot'] = sum(hits) / len(hits)
            scores[f'count_{shot}shot'] = len(hits)
        if chances:
            scores['chance_level'] = sum(chances) / len(chances)
        return scores, verdicts
