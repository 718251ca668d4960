"""Exact-match accuracy after answer extraction: GQA, CLEVR and point QA build on it.

Each prediction and reference goes through `extract_answer` then `normalize_short_answer`. A
prediction with no extractable answer is a parse failure and counts as wrong; the count is reported.
"""
from __future__ import annotations

from ..dataset.root import METRICS
from .answer_extraction import extract_answer, normalize_short_answer


@METRICS.register_module()
class ExactMatchMetric:
    """accuracy = #(normalised extracted prediction == normalised extracted reference) / #samples.

    require_cue: a prediction must contain "The answer is" / "Answer:" (set for models trained to
    reason before answering, so a truncated chain of thought is a parse failure, not an answer).
    """

    def __init__(self, require_cue: bool = False):
        self.require_cue = require_cue

    def parse(self, text: str) -> str | None:
        answer = extract_answer(text, require_cue=self.require_cue)
        return None if answer is None else normalize_short_answer(answer)

    def __call__(self, predictions, references, metas=None):
        verdicts, correct, failures = [], 0, 0
        for pred, ref in zip(predictions, references, strict=True):
            target = extract_answer(ref)
            if target is None:
                raise ValueError(f"reference {ref!r} holds no answer")
            target = normalize_short_answer(target)
            answer = self.parse(pred)
            ok = answer is not None and answer == target
            failures += answer is None
            correct += ok
            verdicts.append({'pred_answer': answer, 'target_answer': target, 'parse_failed': answer is None,
                             'correct': ok})
        n = len(verdicts)
        return {'accuracy': correct / n if n else 0.0, 'parse_failures': failures, 'total': n}, verdicts


@METRICS.register_module()
class GQAComputeMetrics(ExactMatchMetric):
    """GQA accuracy: exact match of the final answer (answers are single words or short phrases)."""


@METRICS.register_module()
class CLEVRComputeMetrics(ExactMatchMetric):
    """CLEVR accuracy: exact match of the final answer (yes/no, counts, attribute words)."""
