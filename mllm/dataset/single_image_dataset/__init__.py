"""Single-image datasets, one module per source; importing this package registers all of them.

Every module in this folder is imported, so a new source only needs its own file.
"""
import importlib
import pkgutil

from .base import AnnotationDataset, MissingDataPathError
from .rec import RECComputeMetrics, RECDataset

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = ['AnnotationDataset', 'MissingDataPathError', 'RECComputeMetrics', 'RECDataset']
