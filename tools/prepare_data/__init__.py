"""Converters from official dataset releases to mllm JSONL; one module per source, each runnable as a script."""
