"""The seeds' memory-saving entry point, kept under its name: finetune.py with flash-attention 2 asked for.

    accelerate launch mllm/pipeline/finetune_mem.py config/x.py [--cfg-options ...] [--hf_flag v ...]

It is finetune.py with `--cfg-options model_args.attn_implementation=flash_attention_2` added (unless the command
line sets `model_args.attn_implementation` itself); where flash-attn is not installed the model builders fall back
to SDPA with a warning. Everything else (arguments, outputs) is finetune.py's.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mllm.pipeline import finetune

FLASH = 'model_args.attn_implementation=flash_attention_2'


def with_flash_attention(argv: list[str]) -> list[str]:
    """`argv` with the flash-attention request added to its --cfg-options (or a new --cfg-options)."""
    argv = list(argv)
    if any(arg.startswith('model_args.attn_implementation=') for arg in argv):
        return argv
    if '--cfg-options' in argv:
        at = argv.index('--cfg-options') + 1
        return [*argv[:at], FLASH, *argv[at:]]
    return [*argv, '--cfg-options', FLASH]


def main(argv=None):
    return finetune.main(with_flash_attention(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    finetune.run_as_script(main)
