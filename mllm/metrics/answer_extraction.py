"""Pull the final short answer out of a generated text ("... The answer is X." / "Answer: X").

Models trained on chain-of-thought or full-sentence targets wrap the answer in a sentence; the
metrics compare only the part after the last answer cue. A text with no cue counts as the answer
itself when `require_cue` is False (plain short-answer training), else it is a parse failure.
"""
from __future__ import annotations

import re

# Cues in priority order of appearance: the LAST occurrence in the text wins (reasoning comes first).
_CUE = re.compile(r'(?:the\s+(?:final\s+)?answer\s+is|answer\s*:)\s*', re.IGNORECASE)
_TRAILING = ' .,;:!?"\'\n\t'


def extract_answer(text: str, require_cue: bool = False) -> str | None:
    """The answer after the last cue, stripped of trailing punctuation; None when it cannot be found."""
    matches = list(_CUE.finditer(text))
    if matches:
        answer = text[matches[-1].end():]
    elif require_cue:
        return None
    else:
        answer = text
    answer = answer.strip().split('\n')[0].strip(_TRAILING)
    return answer or None


def normalize_short_answer(text: str) -> str:
    """Lower case, collapse spaces, drop a leading article and trailing punctuation: for exact match."""
    text = re.sub(r'\s+', ' ', text.lower()).strip(_TRAILING)
    return re.sub(r'^(?:a|an|the)\s+', '', text)
