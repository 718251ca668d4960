"""Training engine: collators, the Seq2SeqTrainer subclass and callbacks."""
from .collator import Collator
from .trainer import MllmTrainer

__all__ = ['Collator', 'MllmTrainer']
