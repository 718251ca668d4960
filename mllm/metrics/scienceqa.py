"""ScienceQA accuracy: the chosen option letter must equal the ground-truth letter.

The letter is read, in this order, from
  1. the text after the last answer cue ("The answer is B", "Answer: (B)") or, with no cue, the
     whole first line: a bare letter ("B", "B.", "(B)", "B) ...", "(B) text"), or the exact text
     of one of the choices (case and surrounding punctuation ignored; needs `metas[i]['choices']`);
  2. otherwise a single distinct "(X)" anywhere in the text.
Anything else, or a letter beyond the number of choices, is a parse failure: counted as wrong
and reported. The ground truth comes from `metas[i]['answer']` (ScienceQADataset.meta) or,
without metas, from the reference text ("The answer is B.").
"""
from __future__ import annotations

import re

from ..dataset.root import METRICS
from .answer_extraction import extract_answer, normalize_short_answer

_LEADING_LETTER = re.compile(r'^\(?([A-Z])(?:\)|[.:](?:\s|$)|$)')
_PAREN_LETTER = re.compile(r'\(([A-Z])\)')


def parse_choice(text: str, choices: list[str] | None = None, num_choices: int | None = None) -> str | None:
    """The option letter chosen in `text`, or None when no valid letter can be read."""
    if choices is not None and num_choices is None:
        num_choices = len(choices)
    letter = None
    answer = extract_answer(text)
    if answer is not None:
        match = _LEADING_LETTER.match(answer.strip())
        if match:
            letter = match.group(1)
        elif choices:
            wanted = normalize_short_answer(answer)
            hits = [k for k, choice in enumerate(choices) if normalize_short_answer(str(choice)) == wanted]
            if len(hits) == 1:
                letter = chr(ord('A') + hits[0])
    if letter is None:
        found = set(_PAREN_LETTER.findall(text))
        if len(found) == 1:
            letter = found.pop()
    if letter is not None and num_choices is not None and ord(letter) - ord('A') >= num_choices:
        return None  # not one of the options shown
    return letter


@METRICS.register_module()
class ScienceQAComputeMetrics:
    """accuracy = #(parsed letter == ground-truth letter) / #samples; parse failures count as wrong."""

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        verdicts, correct, failures = [], 0, 0
        for pred, ref, meta in zip(predictions, references, metas, strict=True):
            meta = meta or {}
            choices, num_choices = meta.get('choices'), meta.get('num_choices')
            target = meta.get('answer') or parse_choice(ref, choices, num_choices)
            if target is None:
                raise ValueError(f"reference {ref!r} holds no option letter")
            letter = parse_choice(pred, choices, num_choices)
            ok = letter == target
            failures += letter is None
            correct += ok
            verdict = {'pred_answer': letter, 'target_answer': target, 'parse_failed': letter is None, 'correct': ok}
            if 'pid' in meta:
                verdict['pid'] = meta['pid']
            verdicts.append(verdict)
        n = len(verdicts)
        return {'accuracy': correct / n if n else 0.0, 'parse_failures': failures, 'total': n}, verdicts
