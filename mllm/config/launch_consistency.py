"""One source of truth per setting: the accelerate file chooses the engine, the training arguments hold the
hyper-parameters (precision included). `accelerate launch` exports the file's choices as ACCELERATE_* variables
before our process starts; `reconcile_with_launcher` reads them before the TrainingArguments are built and

- refuses a pair that would disagree in silence: `training_args.fsdp` / `deepspeed` next to an accelerate file
  that picks an engine, a file's `mixed_precision: bf16` with `training_args.bf16` off (or fp16 likewise), a file's
  gradient accumulation different from `training_args.gradient_accumulation_steps`;
- runs a DeepSpeed file on a machine without GPUs on DeepSpeed's CPU accelerator: `use_cpu` would make accelerate
  drop DeepSpeed for plain multi-CPU data parallel, and without a backend it counts one process per rank, so
  `use_cpu` becomes False and `ddp_backend` gloo (logged);
- stops an FSDP file on a machine without GPUs: accelerate switches to FSDP only from a GPU distributed type, so on
  CPU every rank would train alone (DistributedType.NO) while the logs look normal.
"""
from __future__ import annotations

import logging
import os

import torch

from .args import ConfigError

logger = logging.getLogger(__name__)


def _flag(env, name: str) -> bool:
    return str(env.get(name, 'false')).lower() in ('1', 'true', 'yes')


def launcher_engine(env=None) -> str | None:
    """'deepspeed', 'fsdp' or None, as the accelerate file chose it."""
    env = os.environ if env is None else env
    if _flag(env, 'ACCELERATE_USE_DEEPSPEED'):
        return 'deepspeed'
    if _flag(env, 'ACCELERATE_USE_FSDP'):
        return 'fsdp'
    return None


def reconcile_with_launcher(training_cfg: dict, env=None, cuda_available: bool | None = None) -> dict:
    """`training_cfg` (a dict of TrainingArguments fields) checked against the launcher; returns the dict to build."""
    env = os.environ if env is None else env
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    cfg = dict(training_cfg)
    engine = launcher_engine(env)
    if engine and cfg.get(engine):
        raise ConfigError(f"training_args.{engine}={cfg[engine]!r} and an accelerate file that chooses "
                          f"{engine} too: keep the engine and its settings in the accelerate file only")
    if engine and cfg.get('deepspeed' if engine == 'fsdp' else 'fsdp'):
        other = 'deepspeed' if engine == 'fsdp' else 'fsdp'
        raise ConfigError(f"the accelerate file chooses {engine} but training_args.{other} is set")
    precision = str(env.get('ACCELERATE_MIXED_PRECISION', 'no')).lower()
    for kind in ('bf16', 'fp16'):
        if precision == kind and not cfg.get(kind):
            raise ConfigError(f"the accelerate file says mixed_precision: {kind} but training_args.{kind} is not "
                              f"True: precision is a training argument, set training_args.{kind}=True (or remove "
                              f"mixed_precision from the accelerate file)")
    accumulation = env.get('ACCELERATE_GRADIENT_ACCUMULATION_STEPS')
    if accumulation not in (None, '', 'auto') and int(accumulation) != int(cfg.get('gradient_accumulation_steps', 1)):
        raise ConfigError(f"the accelerate file sets gradient accumulation to {accumulation} but "
                          f"training_args.gradient_accumulation_steps is {cfg.get('gradient_accumulation_steps', 1)}: "
                          f"set it in the training arguments only")
    if engine == 'fsdp' and not cuda_available:
        raise ConfigError("an FSDP accelerate file on a machine without GPUs: accelerate runs FSDP only on GPUs "
                          "(on CPU every rank would train alone). Use accelerate_config/cpu.yaml for several CPU "
                          "processes, or a DeepSpeed file (it runs on DeepSpeed's CPU accelerator)")
    if engine == 'deepspeed' and not cuda_available:
        if cfg.get('use_cpu') or cfg.get('ddp_backend') not in (None, 'gloo'):
            logger.info('DeepSpeed without GPUs: its CPU accelerator over gloo (use_cpu=False, ddp_backend=gloo)')
        cfg['use_cpu'] = False
        cfg['ddp_backend'] = 'gloo'
    elif engine and cfg.get('use_cpu'):
        raise ConfigError(f"training_args.use_cpu=True with a {engine} accelerate file on a machine with GPUs: "
                          f"drop use_cpu, or launch with accelerate_config/cpu.yaml")
    return cfg
