"""Config handling: `prepare_args` turns a config file + command line into run arguments."""
from .args import ConfigError, MllmTrainingArguments, build_training_args, parse_cli, prepare_args

__all__ = ['ConfigError', 'MllmTrainingArguments', 'build_training_args', 'parse_cli', 'prepare_args']
