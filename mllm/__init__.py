"""mllm: a config-driven research framework for multimodal LLMs (LLaVA- and Flamingo-style)."""
__version__ = '0.1.0'
