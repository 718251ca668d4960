"""Command-line + config-file argument handling: `prepare_args(argv)`.

A run is described by one Python config file (mmengine `Config`, with `_base_` inheritance)
holding three sections: `model_args`, `data_args`, `training_args`. The command line may add
`--cfg-options key=value ...` (mmengine `DictAction`) and any `Seq2SeqTrainingArguments` flag.
Precedence: config file < `--cfg-options` < training flags typed on the command line.
`--cfg-options` may only name keys inside the three sections: a helper variable of the file (e.g.
`SHAPES_REC` of a `_base_` file) was already copied into them when the file was read.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import os
import sys
from pathlib import Path

from mmengine.config import Config, ConfigDict, DictAction
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class MllmTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` plus the few switches of mllm's own pipeline."""

    save_final_model: bool = dataclasses.field(default=True, metadata={
        'help': 'Save model, tokenizer and image processor at the end of training (False for benchmarks and '
                'sweeps; checkpoints of save_strategy are not affected).'})


SECTIONS = ('model_args', 'data_args', 'training_args')


class ConfigError(ValueError):
    """A config file, a --cfg-options key or a command-line flag is wrong."""


def did_you_mean(name: str, valid) -> str:
    """" Did you mean 'x'?" for the closest valid name (difflib), or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ''


def _is_helper_variable(key: str) -> bool:
    # Config files may define shared building blocks as module-level names written in capitals
    # (e.g. `DEFAULT_TRAIN_DATASET = dict(...)` in a `_base_` dataset file) or with a leading
    # underscore. Anything else at the top level is treated as a typo of a section name.
    return key.startswith('_') or key.isupper()


def _check_top_level(cfg: Config, path: str) -> None:
    for key in cfg:
        if key in SECTIONS or _is_helper_variable(key):
            continue
        raise ConfigError(
            f"{path}: unknown top-level key '{key}'.{did_you_mean(key, SECTIONS)} "
            f"Valid sections are {', '.join(SECTIONS)} (helper variables must be UPPER_CASE)."
        )


def _typed_training_flags(argv: list[str]) -> dict:
    """Parse only the Seq2SeqTrainingArguments flags actually present in argv.

    Every parser default is replaced by SUPPRESS, so the namespace holds only typed flags and a
    default can never overwrite a value that came from the config file.
    """
    # allow_abbrev=False: a shortened flag is a typo, not a prefix of a real one.
    parser = HfArgumentParser(MllmTrainingArguments, allow_abbrev=False, exit_on_error=False)
    for action in parser._actions:
        if action.dest != 'help':
            action.default = argparse.SUPPRESS
            action.required = False
    try:
        namespace, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise ConfigError(f"command line: {e}") from None
    if unknown:
        valid = [opt for a in parser._actions for opt in a.option_strings]
        flag = next((u for u in unknown if u.startswith('-')), unknown[0])
        raise ConfigError(f"unknown command-line flag '{flag}'.{did_you_mean(flag.split('=')[0], valid)}")
    return vars(namespace)


def _training_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(MllmTrainingArguments) if f.init}


def build_training_args(training_cfg: dict, source: str) -> MllmTrainingArguments:
    fields = _training_fields()
    for key in training_cfg:
        if key not in fields:
            raise ConfigError(f"{source}: unknown training_args key '{key}'.{did_you_mean(key, fields)}")
    return MllmTrainingArguments(**training_cfg)


def _walk(value, path: str):
    """Yield (dotted path, value) for `value` and everything nested in its dicts and lists."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _walk(v, f"{path}.{k}")


def _lookup(cfg, parts: list[str]):
    value = cfg
    for part in parts:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _copies_of(cfg: Config, parts: list[str]) -> list[str]:
    """Section keys that received the helper value named by `parts` when the file was read.

    The shortest prefix of `parts` whose dict or list appears verbatim in a section locates the
    copies (`SHAPES_REC.train` -> `data_args.train`), the rest of the path is appended to them. A
    helper that is a plain value (`LR = 1e-3`) is looked up by equality; True/False/None are too
    common to say anything.
    """
    for n in range(1, len(parts) + 1):
        try:
            value = _lookup(cfg, parts[:n])
        except (KeyError, IndexError, ValueError, TypeError):
            return []
        container = isinstance(value, (dict, list))
        if (container and not value) or (not container and (n < len(parts) or value is None
                                                            or isinstance(value, bool))):
            continue
        suffix = ''.join(f'.{p}' for p in parts[n:])
        # type check for plain values: 1 == 1.0 == True would match unrelated keys
        hits = [path + suffix for section in SECTIONS if section in cfg
                for path, v in _walk(cfg[section], section)
                if v == value and (container or type(v) is type(value))]
        if hits:
            return hits
    return []


def _helper_option_message(cfg: Config, key: str) -> str:
    top = key.split('.')[0]
    if top not in cfg:
        return (f"--cfg-options {key}: '{top}' is not a key of the config file, and only keys inside the "
                f"sections ({', '.join(SECTIONS)}) can be overridden.")
    head = (f"--cfg-options {key}: '{top}' is a helper variable of the config file, not one of the sections "
            f"({', '.join(SECTIONS)}). Overriding it has no effect: its value was already copied into the "
            f"sections when the config file was read.")
    copies = _copies_of(cfg, key.split('.'))
    if copies:
        shown = ', '.join(copies[:5]) + (f' (and {len(copies) - 5} more)' if len(copies) > 5 else '')
        return f"{head} Set {shown} instead."
    return (f"{head} Set the model_args / data_args / training_args key that uses it instead "
            f"(the resolved keys are written to <output_dir>/cfg.py).")


def parse_cli(argv: list[str] | None = None) -> tuple[Config, dict]:
    """Return the merged mmengine Config (file + --cfg-options) and the typed training flags."""
    parser = argparse.ArgumentParser(description='mllm: train / evaluate / predict from a config file',
                                     allow_abbrev=False)
    parser.add_argument('config', help='path to a Python config file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model_args.freeze_backbone=True a.b=[1,2]')
    args, rest = parser.parse_known_args(argv)
    if not os.path.isfile(args.config):
        raise ConfigError(f"config file not found: {args.config}")
    cfg = Config.fromfile(args.config)
    _check_top_level(cfg, args.config)
    for key in args.cfg_options:
        top = key.split('.')[0]
        if top in SECTIONS:
            continue
        if _is_helper_variable(top):
            raise ConfigError(_helper_option_message(cfg, key))
        raise ConfigError(f"--cfg-options: unknown key '{key}'.{did_you_mean(top, SECTIONS)}")
    cfg.merge_from_dict(args.cfg_options)
    flags = _typed_training_flags(rest)
    return cfg, flags


def prepare_args(argv: list[str] | None = None):
    """Resolve config + command line into (cfg, model_args, data_args, training_args).

    `model_args` and `data_args` are mmengine ConfigDicts; `training_args` is a
    `Seq2SeqTrainingArguments`. The resolved config is written to `output_dir/cfg.py` and
    `output_dir/cfg.json` by the main process.
    """
    argv = sys.argv[1:] if argv is None else argv
    cfg, flags = parse_cli(argv)
    for section in SECTIONS:
        if section not in cfg:
            cfg[section] = ConfigDict()
    training_cfg = cfg.training_args.to_dict()
    training_cfg.update(flags)
    training_cfg.setdefault('output_dir', os.path.join('exp', Path(cfg.filename).stem))
    from .launch_consistency import reconcile_with_launcher  # imports ConfigError from here

    training_cfg = reconcile_with_launcher(training_cfg)  # the accelerate file's choices vs the training args
    cfg.training_args = ConfigDict(training_cfg)
    training_args = build_training_args(training_cfg, cfg.filename)
    if training_args.process_index == 0:
        _dump_resolved(cfg, training_args.output_dir)
    return cfg, cfg.model_args, cfg.data_args, training_args


def _dump_resolved(cfg: Config, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    resolved = {k: cfg[k].to_dict() if isinstance(cfg[k], ConfigDict) else cfg[k] for k in SECTIONS}
    Config(resolved).dump(os.path.join(output_dir, 'cfg.py'))
    with open(os.path.join(output_dir, 'cfg.json'), 'w') as f:
        json.dump(resolved, f, indent=2, default=str)
