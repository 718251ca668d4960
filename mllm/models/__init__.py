"""Model families and the `build_model` entry point."""
from .builder import build_model

__all__ = ['build_model']
