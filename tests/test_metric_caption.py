"""CaptionComputeMetrics: hand-computed BLEU, CIDEr of a perfect corpus, both tokenizers (PTB through Java and
the fallback), the missing-package error."""
import logging
import math
import shutil
import sys

import pytest

from mllm.dataset.root import METRICS
from mllm.metrics import caption as caption_metric
from mllm.metrics.caption import CaptionComputeMetrics, tokenize_caption


def test_tokenizer_lowercases_and_strips_punctuation():
    assert tokenize_caption("A man's T-shirt, on a café table!") == "a man's t-shirt on a café table"
    assert tokenize_caption('  Two DOGS -- playing...\n') == 'two dogs playing'
    assert tokenize_caption('?!') == ''


def test_missing_package_message_is_raised_when_the_metric_is_built(monkeypatch):
    # Hide pycocoevalcap (installed or not): a None entry in sys.modules makes its import fail.
    for name in [n for n in sys.modules if n.startswith('pycocoevalcap')]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ('pycocoevalcap', 'pycocoevalcap.bleu.bleu', 'pycocoevalcap.cider.cider'):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install pycocoevalcap') as info:
        METRICS.build(dict(type='CaptionComputeMetrics'))
    assert "mllm[caption]" in str(info.value)
    with pytest.raises(ImportError, match='CaptionComputeMetrics needs the optional package pycocoevalcap'):
        caption_metric.CaptionComputeMetrics()


def test_hand_computed_bleu_on_one_sentence():
    pytest.importorskip('pycocoevalcap')
    scores, verdicts = CaptionComputeMetrics()(['A cat sits on the mat.'], ['A cat sits on the red mat.'])
    # Candidate 6 tokens, reference 7. Clipped n-gram precisions: 6/6, 4/5, 3/4, 2/3; brevity penalty e^(1-7/6).
    bp = math.exp(1 - 7 / 6)
    assert scores['bleu1'] == pytest.approx(bp, rel=1e-6)
    assert scores['bleu2'] == pytest.approx(bp * (1 * 4 / 5) ** (1 / 2), rel=1e-6)
    assert scores['bleu3'] == pytest.approx(bp * (1 * 4 / 5 * 3 / 4) ** (1 / 3), rel=1e-6)
    assert scores['bleu4'] == pytest.approx(bp * (1 * 4 / 5 * 3 / 4 * 2 / 3) ** (1 / 4), rel=1e-6)  # 0.67318
    # One image: every n-gram occurs in all (1) documents, idf = log(1/1) = 0, so CIDEr is 0.
    assert scores['cider'] == 0.0
    assert verdicts == [{'prediction_tokens': 'a cat sits on the mat', 'num_references': 1, 'empty': False,
                         'bleu4': round(scores['bleu4'], 6), 'cider': 0.0}]


PERFECT_REFS = [['A man rides a red bike down the street.', 'a man rides a red bike down the street'],
                ['Two dogs play with a ball on the grass.']]


def test_perfect_corpus_scores_one_and_ten():
    pytest.importorskip('pycocoevalcap')
    preds = ['a man rides a red bike down the street', 'TWO dogs play with a ball on the grass!']
    metas = [{'captions': refs} for refs in PERFECT_REFS]
    scores, verdicts = CaptionComputeMetrics()(preds, [r[0] for r in PERFECT_REFS], metas)
    for k in (1, 2, 3, 4):
        assert scores[f'bleu{k}'] == pytest.approx(1.0, abs=1e-6)
    # Each candidate equals each of its references: cosine 1 for n = 1..4 (every order has n-grams found in one
    # image only, idf log 2 > 0), no length penalty, times 10.
    assert scores['cider'] == pytest.approx(10.0, abs=1e-9)
    assert [v['cider'] for v in verdicts] == [pytest.approx(10.0)] * 2
    assert [v['num_references'] for v in verdicts] == [2, 1]
    assert scores['empty_predictions'] == 0 and scores['total'] == 2


def test_perfect_beats_partial_beats_empty():
    pytest.importorskip('pycocoevalcap')
    metas = [{'captions': refs} for refs in PERFECT_REFS]
    refs = [r[0] for r in PERFECT_REFS]
    metric = METRICS.build(dict(type='CaptionComputeMetrics'))
    perfect, _ = metric([r[0] for r in PERFECT_REFS], refs, metas)
    partial, _ = metric(['a man rides a bike', 'two dogs on the grass'], refs, metas)
    empty, verdicts = metric(['', '...'], refs, metas)
    assert perfect['bleu4'] > partial['bleu4'] > empty['bleu4']
    assert perfect['cider'] > partial['cider'] > empty['cider'] == 0.0
    assert empty['empty_predictions'] == 2 and all(v['empty'] for v in verdicts)


def test_without_metas_the_reference_text_is_the_only_reference():
    pytest.importorskip('pycocoevalcap')
    metric = CaptionComputeMetrics()
    with_metas, _ = metric(['a cat sits on the mat'], ['ignored text'], [{'captions': ['a cat sits on the red mat']}])
    without, _ = metric(['a cat sits on the mat'], ['a cat sits on the red mat'])
    assert with_metas == without
    assert metric([], [])[0]['total'] == 0
    with pytest.raises(ValueError, match='every reference caption is empty'):
        metric(['a cat'], [''])
    with pytest.raises(ValueError, match='every reference caption is empty'):
        CaptionComputeMetrics(tokenizer='simple')(['a cat'], ['!!'])


needs_java = pytest.mark.skipif(shutil.which('java') is None, reason='PTBTokenizer needs java')


@needs_java
def test_ptb_tokenizer_is_used_when_java_is_found():
    pytest.importorskip('pycocoevalcap')
    metric = CaptionComputeMetrics()
    # PTB splits the clitic: "the man 's dog" is 4 tokens on both sides, one matching 4-gram -> BLEU-4 = 1.
    scores, verdicts = metric(["The man's dog"], ["the man's dog."])
    assert scores['tokenizer'] == 'ptb'
    assert verdicts[0]['prediction_tokens'] == "the man 's dog"
    assert scores['bleu4'] == pytest.approx(1.0, abs=1e-6)
    # The fallback keeps "man's" whole: 3 tokens, no 4-gram. The scorer then takes p4 = (0 + 1e-15) / (0 + 1e-9)
    # (its smoothing constants) with p1..p3 = 1 and no brevity penalty: BLEU-4 = (1e-6) ** (1/4).
    simple, verdicts = CaptionComputeMetrics(tokenizer='simple')(["The man's dog"], ["the man's dog."])
    assert simple['tokenizer'] == 'simple' and verdicts[0]['prediction_tokens'] == "the man's dog"
    assert simple['bleu4'] == pytest.approx(1e-6 ** 0.25, rel=1e-4) and simple['bleu1'] == pytest.approx(1.0)


@needs_java
def test_ptb_tokens_and_line_breaks():
    pytest.importorskip('pycocoevalcap')
    preds = ["A man's T-shirt, on a café table!", 'a dog\rruns', '', 'two cats']
    refs = ['a man in a shirt', 'a dog runs', 'a bird', 'two cats sleep']
    scores, verdicts = CaptionComputeMetrics(tokenizer='ptb')(preds, refs)
    # Punctuation tokens are dropped, clitics split; the '\r' became a space instead of shifting the
    # captions after it by a line.
    assert [v['prediction_tokens'] for v in verdicts] == ["a man 's t-shirt on a café table", 'a dog runs', '',
                                                          'two cats']
    assert scores['empty_predictions'] == 1 and scores['tokenizer'] == 'ptb'


def test_fallback_without_java(monkeypatch):
    pytest.importorskip('pycocoevalcap')
    monkeypatch.setattr(shutil, 'which', lambda name: None)
    scores, verdicts = CaptionComputeMetrics()(["The man's dog"], ["the man's dog."])
    assert scores['tokenizer'] == 'simple' and verdicts[0]['prediction_tokens'] == "the man's dog"
    with pytest.raises(RuntimeError, match='needs `java` on PATH'):
        CaptionComputeMetrics(tokenizer='ptb')(['a cat'], ['a cat'])
    with pytest.raises(ValueError, match='tokenizer must be one of'):
        CaptionComputeMetrics(tokenizer='coco')


def test_a_failing_java_run_falls_back_with_a_warning(monkeypatch, caplog):
    pytest.importorskip('pycocoevalcap')
    monkeypatch.setattr(shutil, 'which', lambda name: '/usr/bin/java')

    def broken(captions):
        raise OSError('read-only site-packages')

    monkeypatch.setattr(caption_metric, 'ptb_tokenize', broken)
    with caplog.at_level(logging.WARNING, logger='mllm.metrics.caption'):
        scores, _ = CaptionComputeMetrics()(['a cat'], ['a cat'])
    assert scores['tokenizer'] == 'simple' and 'read-only site-packages' in caplog.text
    with pytest.raises(OSError, match='read-only'):
        CaptionComputeMetrics(tokenizer='ptb')(['a cat'], ['a cat'])
