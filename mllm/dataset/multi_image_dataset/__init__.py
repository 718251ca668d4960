"""Multi-image datasets, one module per source (MIMIC-IT in-context instructions, ...); importing this
package registers all of them.

Every module in this folder is imported, so a new source only needs its own file.
"""
import importlib
import pkgutil

from .mimicit import MIMICITDataset

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = ['MIMICITDataset']
