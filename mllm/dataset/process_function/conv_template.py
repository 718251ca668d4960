"""Conversation templates: how a list of turns becomes one prompt string.

`render` returns the text and the character spans the model must learn to produce (assistant
answers and their end-of-turn marker). Tokenisation later maps those spans onto tokens, so a
template never has to know anything about the tokenizer, except for one check: its end-of-turn
marker is what generation stops at, so `stop_token_ids(tokenizer)` demands that the marker is one
token of the model's tokenizer (or that `stop_token_ids` lists the ids), at load time.

Templates never write the BOS token: the renderer adds the tokenizer's BOS exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..root import CONV_TEMPLATES, IMAGE_PLACEHOLDER

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")


@dataclass
class ConversationTemplate:
    """`{system}{sep}{USER}: {q}{sep}{ASSISTANT}: {a}{end}{USER}: ...`.

    user_role/assistant_role of '' mean the turn text is written without a role prefix.
    """

    name: str
    system: str = ''
    user_role: str = 'USER'
    assistant_role: str = 'ASSISTANT'
    sep: str = ' '          # after the system prompt and after a user turn
    end_of_turn: str = '</s>'  # closes every assistant turn; trained on; generation stops at it
    stop_token_ids: list[int] | None = None  # explicit ids when end_of_turn is not one token
    # Literal prefixes, for formats that are not 'ROLE: text' (Otter: 'User: ' and 'GPT:<answer>');
    # None derives them from the roles as above.
    user_prefix: str | None = None
    assistant_prefix: str | None = None
    answer_sep: str = ' '   # between a literal assistant_prefix and the answer
    images_first: bool = False  # `<image>`s opening a user turn are written before its prefix (Flamingo)
    user_text: bool = True  # False: a user turn writes only its images (OpenFlamingo's captioning prompt)

    def _user_prefix(self) -> str:
        if self.user_prefix is not None:
            return self.user_prefix
        prefix = self._prefix(self.user_role)
        return prefix + ' ' if prefix else ''

    def _assistant_prefix(self) -> tuple[str, str]:
        """(prefix, separator before the answer)."""
        if self.assistant_prefix is not None:
            return self.assistant_prefix, self.answer_sep
        prefix = self._prefix(self.assistant_role)
        return prefix, ' ' if prefix else ''

    def _user_turn(self, value: str) -> str:
        images = ''
        if self.images_first:
            stripped = value.lstrip()
            while stripped.startswith(IMAGE_PLACEHOLDER):
                images += IMAGE_PLACEHOLDER
                stripped = stripped[len(IMAGE_PLACEHOLDER):].lstrip()
            value = stripped if images else value
        if not self.user_text:
            return images + IMAGE_PLACEHOLDER * value.count(IMAGE_PLACEHOLDER) + self._user_prefix()
        return images + self._user_prefix() + value + self.sep

    def resolve_stop_token_ids(self, tokenizer) -> list[int]:
        """The token ids that end an assistant turn for `tokenizer`; a clear error when there are none.

        `end_of_turn` is tokenised after a word, as it appears in the text (a SentencePiece tokenizer
        writes a lone newline as '▁' + '\\n' but a newline after a word as '\\n' alone).
        """
        if self.stop_token_ids:
            unknown = [i for i in self.stop_token_ids if not 0 <= int(i) < len(tokenizer)]
            if unknown:
                raise ValueError(f"conversation template '{self.name}': stop_token_ids {unknown} are not ids of the "
                                 f"tokenizer (vocabulary of {len(tokenizer)})")
            return [int(i) for i in self.stop_token_ids]
        if not self.end_of_turn:
            raise ValueError(f"conversation template '{self.name}' has no end_of_turn: generation could not stop; "
                             f"set end_of_turn or stop_token_ids")
        context = tokenizer('a', add_special_tokens=False)['input_ids']
        with_end = tokenizer('a' + self.end_of_turn, add_special_tokens=False)['input_ids']
        tail = with_end[len(context):] if with_end[:len(context)] == context else None
        if tail is None or len(tail) != 1:
            pieces = tokenizer.convert_ids_to_tokens(with_end)
            raise ValueError(
                f"conversation template '{self.name}': end_of_turn {self.end_of_turn!r} is not one token of "
                f"{type(tokenizer).__name__} ('a' + end_of_turn tokenises as {pieces}), so generation cannot stop "
                f"at it. Use a marker that is one token (e.g. the tokenizer's eos {tokenizer.eos_token!r}) or set "
                f"conv_overrides.stop_token_ids")
        return tail

    def _prefix(self, role: str) -> str:
        return f'{role}:' if role else ''

    def render(self, conversations: list[dict], for_generation: bool = False):
        """Return (text, target_spans, reference).

        for_generation=True drops the last assistant turn, ends the text with the assistant role
        and returns that turn's text as `reference` (kept apart for metrics).
        An assistant turn with `loss: False` (e.g. an in-context example's answer) is written but
        gets no target span.
        """
        turns = list(conversations)
        reference = None
        if for_generation:
            if not turns or turns[-1]['from'] != 'gpt':
                raise ValueError('a conversation for generation must end with an assistant turn')
            reference = turns.pop()['value']
        text = self.system + self.sep if self.system else ''
        spans = []
        for turn in turns:
            if turn['from'] == 'human':
                text += self._user_turn(turn['value'])
            else:
                prefix, answer_sep = self._assistant_prefix()
                text += prefix
                answer = answer_sep + turn['value'] + self.end_of_turn
                start = len(text) + (len(answer) - len(answer.lstrip(' ')))
                text += answer
                if turn.get('loss', True):
                    spans.append((start, len(text)))
        if for_generation:
            text += self._assistant_prefix()[0]
        return text, spans, reference


def get_conv_template(name: str, **overrides) -> ConversationTemplate:
    if name not in CONV_TEMPLATES.module_dict:
        raise KeyError(f"unknown conversation template '{name}'; known: {sorted(CONV_TEMPLATES.module_dict)}")
    # module_dict, not Registry.get: get() reads the '.' in 'vicuna_v1.1' as a scope separator.
    template = CONV_TEMPLATES.module_dict[name]()
    for key, value in overrides.items():
        if not hasattr(template, key):
            raise KeyError(f"conversation template has no field '{key}'")
        setattr(template, key, value)
    return template


@CONV_TEMPLATES.register_module(name='vicuna_v1.1')
def vicuna_v1_1() -> ConversationTemplate:
    return ConversationTemplate(name='vicuna_v1.1', system=VICUNA_SYSTEM)


@CONV_TEMPLATES.register_module(name='plain')
def plain() -> ConversationTemplate:
    """LLaVA's stage-1 captioning format (its `preprocess_plain`): the user turn is reduced to its images, the
    answer (the caption) follows directly and ends with a newline; no roles, no system, no instruction text."""
    return ConversationTemplate(name='plain', system='', user_role='', assistant_role='', sep='',
                                end_of_turn='\n', user_text=False)


@CONV_TEMPLATES.register_module(name='otter')
def otter() -> ConversationTemplate:
    """Otter / MIMIC-IT: `<image>User: {instruction} GPT:<answer> {answer}<|endofchunk|>`, one chunk per
    exchange (in-context examples are earlier chunks); only the text after `<answer>` carries loss."""
    return ConversationTemplate(name='otter', system='', user_prefix='User: ', assistant_prefix='GPT:<answer>',
                                sep=' ', end_of_turn='<|endofchunk|>', images_first=True)


@CONV_TEMPLATES.register_module(name='openflamingo_vqa')
def openflamingo_vqa() -> ConversationTemplate:
    """OpenFlamingo's few-shot VQA prompt: `<image>Question: {q} Short answer: {a}<|endofchunk|>`."""
    return ConversationTemplate(name='openflamingo_vqa', system='', user_prefix='Question: ',
                                assistant_prefix='Short answer:', sep=' ', end_of_turn='<|endofchunk|>',
                                images_first=True)


@CONV_TEMPLATES.register_module(name='openflamingo_caption')
def openflamingo_caption() -> ConversationTemplate:
    """OpenFlamingo's few-shot captioning prompt: `<image>Output: {caption}<|endofchunk|>` (the question is dropped)."""
    return ConversationTemplate(name='openflamingo_caption', system='', user_prefix='', assistant_prefix='Output:',
                                sep='', end_of_turn='<|endofchunk|>', images_first=True, user_text=False)
