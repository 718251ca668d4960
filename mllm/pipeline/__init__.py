"""Entry points: `finetune.py` trains, evaluates and predicts from a config file."""
