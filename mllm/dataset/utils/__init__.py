"""Dataset utilities: file access, geometric transforms and dataset mixtures."""
