"""Train / evaluate / predict / multitest with one config file.

    accelerate launch mllm/pipeline/finetune.py config/x.py [--cfg-options k=v ...] [--hf_flag v ...]
    python mllm/pipeline/finetune.py config/x.py ...

Top-down: arguments -> raw data (paths checked, no model yet) -> model and its family object ->
model-ready data (rendered by the family) -> trainer -> do_train / do_eval / do_predict / do_multi_predict.

Several processes on CPU (gloo): `torchrun --nproc_per_node 2 mllm/pipeline/finetune.py ...` or
`accelerate launch --config_file accelerate_config/cpu.yaml ...`; every rank logs `rank r of N`.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import set_seed

from mllm.config import prepare_args
from mllm.dataset.builder import build_raw_data, prepare_data, run_prepare_steps
from mllm.engine import MllmTrainer
from mllm.engine.callbacks import EpochCallback, TrainingCurveCallback
from mllm.engine.checkpoint import last_complete_checkpoint
from mllm.engine.throughput import ThroughputCallback
from mllm.models import build_model

logger = logging.getLogger('mllm')


def collect_skipped(dataset) -> list[str]:
    """Skipped-sample messages of a dataset or of every member of a mixture."""
    if dataset is None:
        return []
    if hasattr(dataset, 'datasets'):
        return [msg for d in dataset.datasets for msg in collect_skipped(d)]
    return list(getattr(dataset, 'skipped', []))


def gather_from_ranks(items: list) -> list:
    """Every rank's `items`, concatenated in rank order (each rank renders, and skips, only its own samples)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


def resume_point(training_args) -> str | None:
    """`--resume_from_checkpoint last`: the newest complete checkpoint of output_dir, or a fresh start when
    there is none (so a requeued job can always pass it); any other value goes to the Trainer as given."""
    value = training_args.resume_from_checkpoint
    if value != 'last':
        return value
    found = last_complete_checkpoint(training_args.output_dir, training_args.world_size)
    logger.info('resume_from_checkpoint=last: %s', found or f'no complete checkpoint in {training_args.output_dir}, '
                                                             'starting from step 0')
    return found


def do_train(trainer, training_args, family, train_dataset):
    result = trainer.train(resume_from_checkpoint=resume_point(training_args))
    if getattr(training_args, 'save_final_model', True):  # off for benchmarks and sweeps
        trainer.save_model()  # model + tokenizer (processing_class)
        if trainer.is_world_process_zero():
            family.save_pretrained(training_args.output_dir)
    trainer.save_state()  # trainer_state.json
    metrics = dict(result.metrics)
    skipped = gather_from_ranks(collect_skipped(train_dataset))
    metrics['train_skipped_samples'] = len(skipped)
    if skipped:
        logger.warning('%d training samples were skipped as misaligned; first: %s', len(skipped), skipped[0])
    trainer.log_metrics('train', metrics)
    trainer.save_metrics('train', metrics, combined=False)


def do_multi_predict(trainer, multitest: dict):
    """Predict every multitest set; a set that fails is reported and the others still run."""
    failed = {}
    for name, entry in multitest.items():
        try:
            trainer.predict_and_score(entry['dataset'], entry['compute_metric'], prefix=f'multitest_{name}')
        except (ValueError, RuntimeError) as e:
            logger.error('multitest %s failed: %s', name, e)
            failed[name] = e
    if failed:
        names = ', '.join(failed)
        raise RuntimeError(f"{len(failed)} of {len(multitest)} multitest set(s) failed ({names}); the others were "
                           f"written. First error: {next(iter(failed.values()))}") from next(iter(failed.values()))


def main(argv=None):
    logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s', level=logging.INFO)
    _, model_args, data_args, training_args = prepare_args(argv)
    logger.info('rank %d of %d (%s)', training_args.process_index, training_args.world_size,
                training_args.distributed_state.distributed_type)
    set_seed(training_args.seed)
    with training_args.main_process_first(desc='prepare data'):  # generate once, other ranks then read
        run_prepare_steps(data_args)
    raw = build_raw_data(data_args)  # every data path is checked before the model loads
    model, family = build_model(model_args)
    datasets = prepare_data(data_args, model_args, family, raw)

    trainer = MllmTrainer(
        model=model, args=training_args, processing_class=family.tokenizer,
        train_dataset=datasets['train'], eval_dataset=datasets['validation'],
        data_collator=family.collator('train', **(data_args.get('collator_kwargs') or {})),
        eval_collator=family.collator('eval'),
        gen_kwargs=data_args.get('gen_kwargs'), compute_metric=datasets['compute_metric'],
        stop_token_ids=family.stop_token_ids(model_args.get('conv_args')),
        callbacks=[TrainingCurveCallback(), EpochCallback(datasets['train']),
                   ThroughputCallback()],  # real tokens/s and MFU in the logs (engine/throughput.py)
    )
    if training_args.do_train:
        do_train(trainer, training_args, family, datasets['train'])
    if training_args.do_eval:
        trainer.evaluate()
    if training_args.do_predict:
        trainer.predict_and_score(datasets['test'], datasets['compute_metric'], prefix='test')
    if datasets['multitest']:
        do_multi_predict(trainer, datasets['multitest'])
    if trainer.is_world_process_zero():
        logger.info('outputs are in %s', os.path.abspath(training_args.output_dir))
    end_process_group()
    return trainer


_AS_SCRIPT = False  # set by run_as_script: a launched rank may leave the process at the end of main


def end_process_group() -> None:
    """Wait for every rank, then close the process group. A launched rank (run_as_script) leaves with os._exit
    right after the barrier instead: torch 2.13's gloo backend can abort a rank while it shuts the group down or
    the interpreter finalises ('terminate called without an active exception': about 1 launch in 6 with the
    group left open, still about 1 in 30 CI launches after destroy_process_group), failing a run whose work is
    all done. Every output file has been written and closed through `with` blocks by then; the token cache,
    logging and stdio are flushed here, and the other ranks' connections close with the process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    if _AS_SCRIPT:
        token_cache = sys.modules.get('mllm.dataset.token_cache')
        if token_cache is not None:  # its atexit writer would not run after os._exit
            token_cache.close_all()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    dist.destroy_process_group()


def run_as_script(entry=None) -> None:
    """Run `entry` (default: main) as the launched program of one rank."""
    global _AS_SCRIPT
    _AS_SCRIPT = True
    (entry or main)()


if __name__ == '__main__':
    run_as_script()
