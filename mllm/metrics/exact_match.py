"""Exact-match accuracy after answer extraction: GQA, CLEVR and point QA build on it.

Lenient comparison (ExactMatchMetric, CLEVR, PointQA, GQA with `protocol='lenient'`): each prediction and
reference goes through `extract_answer` then `normalize_short_answer` (lower case, spaces collapsed, a
leading article and trailing punctuation dropped). GQA defaults to the published protocol instead (see
GQAComputeMetrics). A prediction with no extractable answer is a parse failure and counts as wrong; the
count is reported.
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

    def target(self, reference: str, meta: dict | None) -> str:
        target = extract_answer(reference)
        if target is None:
            raise ValueError(f"reference {reference!r} holds no answer")
        return normalize_short_answer(target)

    def extra_scores(self) -> dict:
        return {}

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        verdicts, correct, failures = [], 0, 0
        for pred, ref, meta in zip(predictions, references, metas, strict=True):
            target = self.target(ref, meta)
            answer = self.parse(pred)
            ok = answer is not None and answer == target
            failures += answer is None
            correct += ok
            verdicts.append({'pred_answer': answer, 'target_answer': target, 'parse_failed': answer is None,
                             'correct': ok})
        n = len(verdicts)
        scores = {'accuracy': correct / n if n else 0.0, 'parse_failures': failures, 'total': n}
        scores.update(self.extra_scores())
        return scores, verdicts


GQA_PROTOCOLS = ('published', 'lenient')


@METRICS.register_module()
class GQAComputeMetrics(ExactMatchMetric):
    """GQA accuracy: exact match of the final answer; `scores['protocol']` says which comparison scored.

    protocol='published' (default), as LLaVA-style numbers on the GQA leaderboard are made: the answer is
    extracted as for every metric here, then converted as LLaVA's `scripts/convert_gqa_for_eval.py` does
    (`rstrip('.').lower()`), then compared with the official `eval.py`'s plain string equality against
    the released answer (`metas[i]['answer']` from GQADataset.meta, else the extracted reference answer).
    protocol='lenient': both sides through `normalize_short_answer` (drops a leading article, collapses
    spaces), which scores "a dog" / "dog" as equal and so reads higher than the published protocol.
    """

    def __init__(self, require_cue: bool = False, protocol: str = 'published'):
        if protocol not in GQA_PROTOCOLS:
            raise ValueError(f"protocol must be one of {GQA_PROTOCOLS}, got {protocol!r}")
        super().__init__(require_cue)
        self.protocol = protocol

    def parse(self, text: str) -> str | None:
        if self.protocol == 'lenient':
            return super().parse(text)
        answer = extract_answer(text, require_cue=self.require_cue)
        return None if answer is None else answer.rstrip('.').lower()

    def target(self, reference: str, meta: dict | None) -> str:
        if self.protocol == 'lenient':
            return super().target(reference, meta)
        if meta and meta.get('answer') is not None:
            return str(meta['answer'])
        target = extract_answer(reference)
        if target is None:
            raise ValueError(f"reference {reference!r} holds no answer")
        return target

    def extra_scores(self) -> dict:
        return {'protocol': self.protocol}


@METRICS.register_module()
class CLEVRComputeMetrics(ExactMatchMetric):
    """CLEVR accuracy: exact match of the final answer (yes/no, counts, attribute words)."""
