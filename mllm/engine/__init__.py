"""Training engine: collators, the Seq2SeqTrainer subclass and callbacks.

`MllmTrainer` is imported on first use: the trainer imports the models, whose renderers import the collator from
this package, so an eager import here made `import mllm.dataset.flamingo_conversation` (or any module reached
from it first) a circular import.
"""
from .collator import Collator

__all__ = ['Collator', 'MllmTrainer']


def __getattr__(name):
    if name == 'MllmTrainer':
        from .trainer import MllmTrainer

        return MllmTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
