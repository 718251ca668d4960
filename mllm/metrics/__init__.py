"""Metrics (registry METRICS), one module per family; importing this package registers all of them.

Contract of every metric: `metric(predictions, references, metas=None) -> (scores, verdicts)`.
`predictions` / `references` are decoded texts in dataset order; `metas` holds each sample's
`dataset.meta(i)` (e.g. the ten VQAv2 answers) when the dataset provides one. `scores` is a dict
of numbers for `*_results.json`; `verdicts` has one JSON-able dict per sample, written into the
predictions JSONL so failures can be grepped.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')
