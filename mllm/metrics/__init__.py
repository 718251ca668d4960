"""Metrics (registry METRICS), one module per family; importing this package registers all of them.

Contract of every metric: `metric(predictions, references, metas=None) -> (scores, verdicts)`.
`predictions` / `references` are decoded texts in dataset order; `metas` holds each sample's
`dataset.meta(i)` (e.g. the ten VQAv2 answers) when the dataset provides one. `scores` is a dict
of numbers for `*_results.json`, plus a short string where a metric can score by more than one rule
(`reading`, `protocol`, `processing`, `tokenizer`: which one scored); `verdicts` has one JSON-able dict
per sample, written into the predictions JSONL so failures can be grepped.
Metrics that parse boxes or points take `box_formatter`, the model's built formatter (see `grounding`).
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')
