"""POPE metrics: accuracy, precision, recall, F1 (positive class = 'yes') and the yes-ratio.

A prediction's answer is the first word 'yes' or 'no' (any case, whole words only, so "not" and
"nope" do not count) in the text after the last answer cue ("The answer is", "Answer:"), or in
the first line when there is no cue. Neither word is a parse failure: it counts as wrong, is
never a 'yes' prediction, and is reported. Hence, with failures F:
  TP + FN = #label yes (a failed 'yes' sample is a false negative),
  TN + FP + F_no = #label no (a failed 'no' sample is neither TN nor FP),
  accuracy = (TP + TN) / N, precision = TP / (TP + FP), recall = TP / (TP + FN),
  yes_ratio = #predicted yes / N; a ratio with a zero denominator is 0.
The label comes from `metas[i]['label']` (POPEDataset.meta) or, without metas, from the reference.
"""
from __future__ import annotations

import re

from ..dataset.root import METRICS
from .answer_extraction import extract_answer

_YES_NO = re.compile(r'\b(yes|no)\b', re.IGNORECASE)


def parse_yes_no(text: str) -> str | None:
    """'yes' / 'no': the first such word of the extracted answer; None when there is neither."""
    answer = extract_answer(text)
    match = _YES_NO.search(answer) if answer else None
    return match.group(1).lower() if match else None


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@METRICS.register_module()
class POPEComputeMetrics:
    """Binary yes/no scores over (prediction, reference) texts; see the module docstring."""

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        tp = fp = tn = fn = failures = yes = 0
        verdicts = []
        for pred, ref, meta in zip(predictions, references, metas, strict=True):
            target = (meta or {}).get('label') or parse_yes_no(ref)
            if target not in ('yes', 'no'):
                raise ValueError(f"reference {ref!r} holds no yes/no label")
            answer = parse_yes_no(pred)
            failures += answer is None
            yes += answer == 'yes'
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
        }
        return scores, verdicts
