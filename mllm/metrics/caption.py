"""Captioning metrics: BLEU-1..4 and CIDEr (the CIDEr-D variant of the COCO evaluation server).

Scores come from pycocoevalcap's own `Bleu` and `Cider` scorers, an optional dependency
(`pip install pycocoevalcap`, or the `caption` extra): building the metric without it raises an
ImportError that says so, before any evaluation runs.

Tokenisation: the COCO toolkit's PTBTokenizer runs Stanford CoreNLP through Java, so it is NOT
used here. `tokenize_caption` instead lower-cases, keeps words (letters/digits, with inner
apostrophes and hyphens such as "man's" or "t-shirt") and drops all other punctuation. PTB splits
clitics ("man 's"), so numbers can differ slightly from the official server; they are consistent
between runs and models.

References of sample i are `metas[i]['captions']` (COCOCaptionDataset.meta in eval mode: all
captions of the image), or the reference text alone when no metas are given. CIDEr's
document frequencies come from the evaluated corpus, so it needs several images to mean
anything (with one image every n-gram has idf 0 and CIDEr is 0).
"""
from __future__ import annotations

import contextlib
import io
import re

from ..dataset.root import METRICS

INSTALL_HINT = ("CaptionComputeMetrics needs the optional package pycocoevalcap: "
                "pip install pycocoevalcap  (or: pip install 'mllm[caption]')")

_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def tokenize_caption(text: str) -> str:
    """Lower-case words joined by single spaces; punctuation other than inner ' and - is dropped."""
    return ' '.join(_WORD.findall(str(text).lower()))


def _load_scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return Bleu, Cider


@METRICS.register_module()
class CaptionComputeMetrics:
    """Corpus BLEU-1..4 and CIDEr over (prediction, references) pairs, plus per-sample scores."""

    def __init__(self):
        bleu_cls, cider_cls = _load_scorers()
        self.bleu, self.cider = bleu_cls(4), cider_cls()

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        gts, res = {}, {}
        for i, (pred, ref, meta) in enumerate(zip(predictions, references, metas, strict=True)):
            refs = (meta or {}).get('captions') or [ref]
            gts[i] = [tokenize_caption(r) for r in refs]
            res[i] = [tokenize_caption(pred)]
        n = len(res)
        empty = sum(not r[0] for r in res.values())
        if n == 0:
            return {'bleu1': 0.0, 'bleu2': 0.0, 'bleu3': 0.0, 'bleu4': 0.0, 'cider': 0.0,
                    'empty_predictions': 0, 'total': 0}, []
        if not any(r for refs in gts.values() for r in refs):
            raise ValueError('every reference caption is empty; nothing to score against')
        with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its internals
            bleu, bleu_per_sample = self.bleu.compute_score(gts, res)
        cider, cider_per_sample = self.cider.compute_score(gts, res)
        scores = {f'bleu{k + 1}': float(bleu[k]) for k in range(4)}
        scores.update({'cider': float(cider), 'empty_predictions': empty, 'total': n})
        verdicts = [{'prediction_tokens': res[i][0], 'num_references': len(gts[i]), 'empty': not res[i][0],
                     'bleu4': round(float(bleu_per_sample[3][i]), 6), 'cider': round(float(cider_per_sample[i]), 6)}
                    for i in range(n)]
        return scores, verdicts
