"""POPE metrics: accuracy, precision, recall, F1 (positive class = 'yes') and the yes-ratio.

Two readings of a free-form prediction; `scores['reading']` says which one scored.
  * `mode='official'` (default), the reading of the POPE evaluation script (RUCAIBox/POPE
    `evaluate.py`; LLaVA's `llava/eval/eval_pope.py` is the same): the raw text up to its first '.',
    commas removed, split on single spaces; if one of the words is exactly 'No', 'not' or 'no' the
    answer is 'no', otherwise 'yes'. Every text is read, so there are no parse failures; a text with
    neither word counts as 'yes' ("I cannot tell", "NO", "No!" too) and is counted in
    `read_as_yes_by_default` (no word 'yes', any case, in its first sentence).
  * `mode='strict'` (the reading used before): the first whole word 'yes' or 'no' (any case; "not",
    "nope" do not count) in the text after the last answer cue ("The answer is", "Answer:"), or in the
    first line when there is no cue. Neither word is a parse failure: it counts as wrong, is never a
    'yes' prediction, and is reported.
Hence, with failures F (always 0 in official mode):
  TP + FN = #label yes (a failed 'yes' sample is a false negative),
  TN + FP + F_no = #label no (a failed 'no' sample is neither TN nor FP),
  accuracy = (TP + TN) / N, precision = TP / (TP + FP), recall = TP / (TP + FN),
  yes_ratio = #predicted yes / N; a ratio with a zero denominator is 0 (the script would divide by zero).
The label comes from `metas[i]['label']` (POPEDataset.meta) or, without metas, from the reference text
(read strictly: it is our own "The answer is yes.").
"""
from __future__ import annotations

import re

from ..dataset.root import METRICS
from .answer_extraction import extract_answer

_YES_NO = re.compile(r'\b(yes|no)\b', re.IGNORECASE)
_YES = re.compile(r'\byes\b', re.IGNORECASE)
# The words the official script takes for a negative answer (case-sensitive, whole space-separated words).
OFFICIAL_NO_WORDS = frozenset({'No', 'not', 'no'})
MODES = ('official', 'strict')


def parse_yes_no(text: str) -> str | None:
    """Strict reading: 'yes' / 'no', the first such word of the extracted answer; None when there is neither."""
    answer = extract_answer(text)
    match = _YES_NO.search(answer) if answer else None
    return match.group(1).lower() if match else None


def _first_sentence(text: str) -> str:
    return text.split('.', 1)[0]


def official_yes_no(text: str) -> str:
    """The POPE script's reading: 'no' when the first sentence has the word No / not / no, else 'yes'."""
    words = _first_sentence(text).replace(',', '').split(' ')
    return 'no' if OFFICIAL_NO_WORDS.intersection(words) else 'yes'


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@METRICS.register_module()
class POPEComputeMetrics:
    """Binary yes/no scores over (prediction, reference) texts; `mode` 'official' or 'strict' (module docstring)."""

    def __init__(self, mode: str = 'official'):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def read(self, text: str) -> str | None:
        return official_yes_no(text) if self.mode == 'official' else parse_yes_no(text)

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        tp = fp = tn = fn = failures = yes = by_default = 0
        verdicts = []
        for pred, ref, meta in zip(predictions, references, metas, strict=True):
            target = (meta or {}).get('label') or parse_yes_no(ref)
            if target not in ('yes', 'no'):
                raise ValueError(f"reference {ref!r} holds no yes/no label")
            answer = self.read(pred)
            failures += answer is None
            yes += answer == 'yes'
            if self.mode == 'official' and answer == 'yes' and not _YES.search(_first_sentence(pred)):
                by_default += 1
            if target == 'yes':
                tp += answer == 'yes'
                fn += answer != 'yes'
            else:
                fp += answer == 'yes'
                tn += answer == 'no'
            verdict = {'pred_answer': answer, 'target_answer': target, 'parse_failed': answer is None,
                       'correct': answer == target}
            if meta and 'question_id' in meta:
                verdict['question_id'] = meta['question_id']
            verdicts.append(verdict)
        n = len(verdicts)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        scores = {
            'accuracy': _ratio(tp + tn, n), 'precision': precision, 'recall': recall,
            'f1': _ratio(2 * precision * recall, precision + recall), 'yes_ratio': _ratio(yes, n),
            'tp': tp, 'fp': fp, 'tn': tn, 'fn': fn, 'parse_failures': failures, 'total': n,
            'reading': self.mode,
        }
        if self.mode == 'official':
            scores['read_as_yes_by_default'] = by_default
        return scores, verdicts
