"""Conversation templates: how a list of turns becomes one prompt string.

`render` returns the text and the character spans the model must learn to produce (assistant
answers and their end-of-turn marker). Tokenisation later maps those spans onto tokens, so a
template never has to know anything about the tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..root import CONV_TEMPLATES

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
    end_of_turn: str = '</s>'  # closes every assistant turn; trained on

    def _prefix(self, role: str) -> str:
        return f'{role}:' if role else ''

    def render(self, conversations: list[dict], for_generation: bool = False):
        """Return (text, target_spans, reference).

        for_generation=True drops the last assistant turn, ends the text with the assistant role
        and returns that turn's text as `reference` (kept apart for metrics).
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
                prefix = self._prefix(self.user_role)
                text += (prefix + ' ' if prefix else '') + turn['value'] + self.sep
            else:
                prefix = self._prefix(self.assistant_role)
                text += prefix
                answer = (' ' if prefix else '') + turn['value'] + self.end_of_turn
                start = len(text) + (len(answer) - len(answer.lstrip(' ')))
                text += answer
                spans.append((start, len(text)))
        if for_generation:
            text += self._prefix(self.assistant_role)
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
    """LLaVA-pretraining style captioning: `<image>` then the caption, no roles, no system."""
    return ConversationTemplate(name='plain', system='', user_role='', assistant_role='', sep='',
                                end_of_turn='\n')
