"""Captioning metrics: BLEU-1..4 and CIDEr (the CIDEr-D variant of the COCO evaluation server).

Scores come from pycocoevalcap's own `Bleu` and `Cider` scorers, an optional dependency
(`pip install pycocoevalcap`, or the `caption` extra): building the metric without it raises an
ImportError that says so, before any evaluation runs.

Tokenisation (`scores['tokenizer']` says which one scored):
  * 'ptb': pycocoevalcap's PTBTokenizer (Stanford CoreNLP through Java, punctuation tokens dropped),
    as the COCO server tokenises. Used when `java` is on PATH. Line breaks inside a caption become
    spaces first (the tokenizer reads one caption per line).
  * 'simple': `tokenize_caption`, the fallback without Java: lower-case words (letters/digits, with inner
    apostrophes and hyphens such as "man's" or "t-shirt"), all other punctuation dropped. PTB splits
    clitics ("man 's"), so numbers can differ slightly from the official server's.
`tokenizer='auto'` (default) takes 'ptb' when Java is found and falls back to 'simple', with a warning,
when the Java run fails; 'ptb' insists on it (an error otherwise); 'simple' never starts Java.

References of sample i are `metas[i]['captions']` (COCOCaptionDataset.meta in eval mode: all
captions of the image), or the reference text alone when no metas are given. CIDEr's
document frequencies come from the evaluated corpus, so it needs several images to mean
anything (with one image every n-gram has idf 0 and CIDEr is 0).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import subprocess

from ..dataset.root import METRICS

logger = logging.getLogger(__name__)

INSTALL_HINT = ("CaptionComputeMetrics needs the optional package pycocoevalcap: "
                "pip install pycocoevalcap  (or: pip install 'mllm[caption]')")
TOKENIZERS = ('auto', 'ptb', 'simple')

_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def tokenize_caption(text: str) -> str:
    """Lower-case words joined by single spaces; punctuation other than inner ' and - is dropped."""
    return ' '.join(_WORD.findall(str(text).lower()))


def _one_line(text) -> str:
    # The PTB wrapper writes one caption per line and pairs output lines with captions in order:
    # a stray '\r' (or any other line break) would shift every caption after it.
    return ' '.join(str(text).splitlines())


def ptb_tokenize(captions: dict) -> dict:
    """{key: [caption, ...]} -> {key: [tokenized, ...]} with pycocoevalcap's PTBTokenizer (needs Java)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({k: [{'caption': _one_line(c)} for c in v] for k, v in captions.items()})
    if any(len(tokenized.get(k, [])) != len(v) for k, v in captions.items()):
        raise RuntimeError('PTBTokenizer returned a different number of lines than captions given')
    return tokenized


def _load_scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return Bleu, Cider


@METRICS.register_module()
class CaptionComputeMetrics:
    """Corpus BLEU-1..4 and CIDEr over (prediction, references) pairs, plus per-sample scores.

    tokenizer: 'auto' (PTB when `java` is on PATH, else simple), 'ptb' or 'simple'; see the module docstring.
    """

    def __init__(self, tokenizer: str = 'auto'):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        bleu_cls, cider_cls = _load_scorers()
        self.bleu, self.cider = bleu_cls(4), cider_cls()
        self.tokenizer = tokenizer

    def _tokenize(self, refs: list[list[str]], preds: list[str]) -> tuple[dict, dict, str]:
        """(gts, res, tokenizer used): {i: [tokenized references]}, {i: [tokenized prediction]}."""
        n = len(preds)
        use_ptb = self.tokenizer == 'ptb' or (self.tokenizer == 'auto' and shutil.which('java') is not None)
        if self.tokenizer == 'ptb' and shutil.which('java') is None:
            raise RuntimeError("CaptionComputeMetrics(tokenizer='ptb') needs `java` on PATH")
        if use_ptb:
            # One Java run for references and predictions together (keys n.. are the predictions).
            captions = {i: list(r) for i, r in enumerate(refs)} | {n + i: [p] for i, p in enumerate(preds)}
            try:
                tokenized = ptb_tokenize(captions)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                if self.tokenizer == 'ptb':
                    raise
                logger.warning('PTBTokenizer failed (%s); captions are scored with the simple tokenizer', e)
            else:
                return ({i: tokenized[i] for i in range(n)}, {i: tokenized[n + i] for i in range(n)}, 'ptb')
        gts = {i: [tokenize_caption(r) for r in refs[i]] for i in range(n)}
        res = {i: [tokenize_caption(p)] for i, p in enumerate(preds)}
        return gts, res, 'simple'

    def __call__(self, predictions, references, metas=None):
        metas = metas if metas is not None else [None] * len(predictions)
        refs = [(meta or {}).get('captions') or [ref]
                for pred, ref, meta in zip(predictions, references, metas, strict=True)]
        n = len(predictions)
        if n == 0:
            return {'bleu1': 0.0, 'bleu2': 0.0, 'bleu3': 0.0, 'bleu4': 0.0, 'cider': 0.0,
                    'empty_predictions': 0, 'total': 0}, []
        gts, res, used = self._tokenize(refs, list(predictions))
        empty = sum(not r[0] for r in res.values())
        if not any(r for refs_i in gts.values() for r in refs_i):
            raise ValueError('every reference caption is empty; nothing to score against')
        with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its internals
            bleu, bleu_per_sample = self.bleu.compute_score(gts, res)
        cider, cider_per_sample = self.cider.compute_score(gts, res)
        scores = {f'bleu{k + 1}': float(bleu[k]) for k in range(4)}
        scores.update({'cider': float(cider), 'empty_predictions': empty, 'total': n, 'tokenizer': used})
        verdicts = [{'prediction_tokens': res[i][0], 'num_references': len(gts[i]), 'empty': not res[i][0],
                     'bleu4': round(float(bleu_per_sample[3][i]), 6), 'cider': round(float(cider_per_sample[i]), 6)}
                    for i in range(n)]
        return scores, verdicts
