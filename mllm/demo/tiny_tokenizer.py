"""A small, fully offline tokenizer for the embedded shapes demo.

The vocabulary is written out by hand (no training, no download), so the
result is identical on every machine:

* special tokens ``<unk> <s> </s> <pad> <image> <boxes> <points>``;
* every box coordinate ``0.000`` ... ``1.000`` as ONE token, so a box
  ``[0.120,0.340,0.560,0.780]`` costs 9 tokens;
* the words of the demo (system prompts, question templates, colours,
  shape names, spatial words) plus a few hundred common English words,
  each with and without a leading space (spaces are stored as ``▁``);
* every printable ASCII character and the 256 ``<0xNN>`` byte tokens, so
  that any text the vocabulary does not know is spelt out character by
  character (or byte by byte) and still decodes back to the same string.

``decode(encode(text)) == text`` holds for arbitrary text; known words,
numbers and punctuation come out as single tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

SPACE = "\u2581"  # '▁' stands for a space inside the tokenizer

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<boxes>", "<points>"]

# Words the demo itself produces (shapes.py builds all its text from these).
DEMO_WORDS = """
a an the of in on at to with and or is are be this that it its image picture photo
chat between user assistant curious artificial intelligence helpful detailed polite
answers questions gives human
where which what find locate give show point out mark output
box bounding boxes coordinates region location position
answer please one shape object thing figure
red green blue yellow purple orange cyan white black gray grey pink brown
circle square triangle diamond star rectangle ellipse
left right top bottom middle center centre upper lower
leftmost rightmost topmost bottommost highest lowest
USER ASSISTANT Answer
""".split()

# A modest list of common English words so ordinary text is not spelt out
# letter by letter. Anything else still round-trips via characters/bytes.
COMMON_WORDS = """
about above across after again against all also always am among another any
anything around as ask asked back because been before being below best better
big both but by can could day did different do does done down during each
either else end enough even ever every example first for from get go good
great had has have he her here him his how however i if image images into
just know large last least less like line little long look made make many may
me more most much must my near need never new next no not now number off
old once only other our over own part people place point right same see she
should show side since small so some something still such take than them then
there these they thing think those through time too two under until up us use
used very want was way we well were when while who why will word words work
would yes yet you your one two three four five six seven eight nine ten zero
first second third last more less size sizes big small tiny large color colour
colors colours shapes objects dataset model train training test testing
""".split()

# Regex used to cut the (space-marked) text into pieces before lookup:
# words with an optional leading space, decimal numbers, integers, single
# other characters, runs of spaces.
_PIECE = (
    SPACE + "?[A-Za-z]+"
    "|" + SPACE + r"?\d+\.\d+"
    "|" + SPACE + r"?\d+"
    "|" + SPACE + "?[^" + SPACE + r"A-Za-z0-9\s]"
    "|" + SPACE + "+"
    r"|\s"
)


def coordinate_tokens() -> list[str]:
    """All box values as written in the demo text: '0.000' ... '1.000'."""
    return [f"{i / 1000:.3f}" for i in range(1001)]


def _vocab_pieces(words: Iterable[str]) -> list[str]:
    pieces: list[str] = []
    for w in words:
        for v in (w, w.lower(), w.capitalize()):
            pieces.append(v)
            pieces.append(SPACE + v)
    return pieces


def _build_vocab() -> dict:
    ordered: list[str] = list(SPECIAL_TOKENS)
    ordered += [f"<0x{b:02X}>" for b in range(256)]
    ascii_chars = [chr(c) for c in range(33, 127)]
    ordered += [SPACE] + ascii_chars + [SPACE + c for c in ascii_chars] + ["\t", "\n"]
    ordered += coordinate_tokens()
    ordered += [str(i) for i in range(10, 100)] + [SPACE + str(i) for i in range(100)]
    ordered += _vocab_pieces(DEMO_WORDS + COMMON_WORDS)
    vocab: dict = {}
    for tok in ordered:
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return vocab


def _build_backend() -> Tokenizer:
    vocab = _build_vocab()
    # No merges: a piece is either a whole vocabulary entry (ignore_merges)
    # or falls apart into characters; unknown characters become bytes.
    model = BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True, ignore_merges=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", SPACE)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECE), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    bos_id = vocab["<s>"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def build_tiny_tokenizer(save_dir: str | None = None) -> PreTrainedTokenizerFast:
    """Return the demo tokenizer; cache it in ``save_dir`` when given."""
    if save_dir is not None and os.path.isfile(os.path.join(save_dir, "tokenizer.json")):
        return PreTrainedTokenizerFast.from_pretrained(save_dir)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_build_backend(),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<image>", "<boxes>", "<points>"],
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
        padding_side="right",
    )
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        tok.save_pretrained(save_dir)
    return tok
