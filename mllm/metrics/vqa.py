"""VQA accuracy as computed by the official VQAv2 evaluation (GT-Vision-Lab/VQA, vqaEval.py).

Re-implemented from the documented behaviour of the official code (master, after its 2021 fix
"Fixed processing answers bug"), quirks included, so numbers match the reference tool:
  * the prediction and the human answers: newlines/tabs -> spaces, stripped;
  * when the human answers of a question are NOT all identical, the prediction and every answer go
    through `process_punctuation` then `process_digit_article` (lower case, number words -> digits,
    articles dropped, missing apostrophes restored); when all ten agree, strings are compared as is
    (the release stores normalised answers, so only an un-normalised prediction is affected);
  * accuracy of a question = mean over the leave-one-annotator-out subsets of
    min(#answers in the subset equal to the prediction / 3, 1). With 10 answers of which k match:
    k=0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >=4 -> 1.0.
  * a prediction that normalises to nothing ('the.', '.', '') is compared like any other: it is
    credited against the annotators whose answers also normalise to nothing, as the official code does.
    It is still counted in `parse_failures`, beside the score.
The official script is Python 2, whose `\\d` without re.UNICODE is [0-9]; the digit rules here are
ASCII for that reason (Python 3's full-case `lower()` of 'İ' and a final 'Σ' still differs from it).
`processing='always'` normalises prediction and answers for every question (lenient, as many
re-implementations do). Before all that, the answer is pulled out of the generated text
("The answer is X.", "Answer: X"); no answer at all is scored as the empty answer ''.
"""
from __future__ import annotations

import re

from ..dataset.root import METRICS
from .answer_extraction import extract_answer

NUMBER_WORDS = {'none': '0', 'zero': '0', 'one': '1', 'two': '2', 'three': '3', 'four': '4', 'five': '5',
                'six': '6', 'seven': '7', 'eight': '8', 'nine': '9', 'ten': '10'}
ARTICLES = frozenset({'a', 'an', 'the'})
# Punctuation the official code removes or turns into a space; the apostrophe, colon and period are
# not in it (periods have their own rule below).
PUNCTUATION = (';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
               '?', '!')
# A comma between digits ("1,000"): when present anywhere, every punctuation mark is deleted instead
# of becoming a space, so the number stays one token ("1000").
_COMMA_BETWEEN_DIGITS = re.compile(r'([0-9])(,)([0-9])')
# A period not followed by a digit is deleted ("dog." -> "dog", "3.5" kept). The official pattern
# passes re.UNICODE (32) where `count` goes, so at most 32 periods are deleted; kept for parity.
_PERIOD = re.compile(r'\.(?![0-9])')
_PERIOD_MAX = 32

# Words written without their apostrophe -> the official spelling (official table; keys with
# capitals never match after lower-casing but are listed for completeness).
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've|couldnt've couldn't've
didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've|hadn'tve hadn't've|hasnt hasn't
havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's|howd how'd|howll how'll|hows how's
Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd|itd've it'd've|it'dve it'd've|itll it'll
let's let's|maam ma'am|mightnt mightn't|mightnt've mightn't've|mightn'tve mightn't've|mightve might've
mustnt mustn't|mustve must've|neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at
'ows'at 'ow's'at|'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll|someones someone's
somethingd something'd|somethingd've something'd've|something'dve something'd've|somethingll something'll
thats that's|thered there'd|thered've there'd've|there'dve there'd've|therere there're|theres there's
theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll|theyre they're|theyve they've|twas 'twas
wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've|werent weren't|whatll what'll|whatre what're
whats what's|whatve what've|whens when's|whered where'd|wheres where's|whereve where've|whod who'd
whod've who'd've|who'dve who'd've|wholl who'll|whos who's|whove who've|whyll why'll|whyre why're|whys why's
wont won't|wouldve would've|wouldnt wouldn't|wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all
yall'll y'all'll|y'allll y'all'll|yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd
youd've you'd've|you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS = dict(pair.split(' ') for line in _CONTRACTION_PAIRS.strip().splitlines()
                    for pair in line.split('|'))


def process_punctuation(text: str) -> str:
    """Official punctuation rule: a mark next to a space (or any mark when the text has a comma between
    digits) is deleted, other marks become a space; then periods not followed by a digit are deleted."""
    out = text
    digits_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        # The official test looks at the ORIGINAL text for every mark, not at the text being edited.
        if mark + ' ' in text or ' ' + mark in text or digits_comma:
            out = out.replace(mark, '')
        else:
            out = out.replace(mark, ' ')
    return _PERIOD.sub('', out, count=_PERIOD_MAX)


def process_digit_article(text: str) -> str:
    """Lower case, number words -> digits, articles dropped, contractions spelled officially."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return ' '.join(CONTRACTIONS.get(w, w) for w in words)


def clean(text: str) -> str:
    """Newlines and tabs become spaces; outer whitespace is stripped (applied to every answer)."""
    return text.replace('\n', ' ').replace('\t', ' ').strip()


def normalize_answer(text: str) -> str:
    """The full official processing of one answer: clean, punctuation, digits/articles/contractions."""
    return process_digit_article(process_punctuation(clean(text)))


PROCESSING_MODES = ('official', 'always')


def vqa_accuracy(prediction: str, answers: list[str], processing: str = 'official') -> tuple[float, int]:
    """(accuracy, #matching answers) of a predicted answer against the raw human answers.

    processing='official': normalise only when the human answers disagree (see the module docstring);
    'always': normalise the prediction and the answers for every question.
    Leave-one-out: for each annotator i, min(#matches among the others / 3, 1); the mean over i.
    Computed in integers (sum of min(matches, 3)) / (3 n) so 0.3, 0.6, 0.9 come out exact.
    """
    if processing not in PROCESSING_MODES:
        raise ValueError(f"processing must be one of {PROCESSING_MODES}, got {processing!r}")
    n = len(answers)
    if n == 0:
        raise ValueError('no human answers to score against')
    prediction, answers = clean(prediction), [clean(a) for a in answers]
    if processing == 'always' or len(set(answers)) > 1:
        prediction, answers = normalize_answer(prediction), [normalize_answer(a) for a in answers]
    hits = [a == prediction for a in answers]
    matches = sum(hits)
    total = sum(min(matches - hit, 3) for hit in hits)
    return total / (3 * n), matches


@METRICS.register_module()
class VQAv2ComputeMetrics:
    """Official VQA accuracy over (prediction, reference) texts with metas from VQAv2Dataset.meta.

    metas[i] = {'answers': [ten raw human answers], 'answer_type': ...}. A sample whose meta has no
    answers (no metas given, or a dataset without the ten answers) is scored against its reference
    answer repeated ten times, i.e. exact match; such samples are counted in 'reference_fallbacks'.
    processing: 'official' (default) or 'always', see `vqa_accuracy`.
    require_cue: a prediction must contain "The answer is" / "Answer:" (see ExactMatchMetric).
    Scores: accuracy in [0, 1] (the server reports 100x), accuracy_<answer type> (yes_no, number,
    other) when metas have 'answer_type', parse_failures (no answer left after extraction and
    normalisation; still scored by the official rule, which credits them only against annotators whose
    answers normalise to nothing), reference_fallbacks, total, processing (which rule scored).
    """

    def __init__(self, processing: str = 'official', require_cue: bool = False):
        if processing not in PROCESSING_MODES:
            raise ValueError(f"processing must be one of {PROCESSING_MODES}, got {processing!r}")
        self.processing, self.require_cue = processing, require_cue

    def __call__(self, predictions, references, metas=None):
        if metas is None:
            metas = [{}] * len(predictions)
        verdicts, total, failures, fallbacks = [], 0.0, 0, 0
        by_type: dict[str, list[float]] = {}
        for k, (pred, ref, meta) in enumerate(zip(predictions, references, metas, strict=True)):
            meta = meta or {}
            answers = meta.get('answers') or []
            if not answers:
                target = extract_answer(ref)
                if target is None:
                    raise ValueError(f"sample {k}: no human answers in metas and reference {ref!r} holds no answer")
                answers, fallbacks = [target] * 10, fallbacks + 1
            # What the server would receive: the extracted answer, '' when there is none.
            extracted = extract_answer(pred, require_cue=self.require_cue) or ''
            shown = normalize_answer(extracted)
            # No text, or only punctuation/articles: a parse failure, yet scored as the official code does.
            failures += not shown
            accuracy, matches = vqa_accuracy(extracted, answers, self.processing)
            total += accuracy
            if 'answer_type' in meta:
                by_type.setdefault(meta['answer_type'], []).append(accuracy)
            verdicts.append({'pred_answer': shown or None, 'accuracy': accuracy, 'matches': matches,
                             'parse_failed': not shown, 'correct': accuracy >= 1.0})
        n = len(verdicts)
        scores = {'accuracy': total / n if n else 0.0, 'parse_failures': failures,
                  'reference_fallbacks': fallbacks, 'total': n, 'processing': self.processing}
        for answer_type, values in sorted(by_type.items()):
            key = answer_type.replace('/', '_').replace(' ', '_')
            scores[f'accuracy_{key}'] = sum(values) / len(values)
            scores[f'total_{key}'] = len(values)
        return scores, verdicts
