"""Train / evaluate / predict / multitest with one config file.

    accelerate launch mllm/pipeline/finetune.py config/x.py [--cfg-options k=v ...] [--hf_flag v ...]
    python mllm/pipeline/finetune.py config/x.py ...

Top-down: arguments -> model -> data -> trainer -> do_train / do_eval / do_predict / do_multi_predict.
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
from mllm.dataset.builder import prepare_data, run_prepare_steps
from mllm.engine import Collator, MllmTrainer
from mllm.engine.callbacks import EpochCallback, TrainingCurveCallback
from mllm.models import build_model

logger = logging.getLogger('mllm')


def collect_skipped(dataset) -> list[str]:
    """Skipped-sample messages of a dataset or of every member of a mixture."""
    if dataset is None:
        return []
    if hasattr(dataset, 'datasets'):
        return [msg for d in dataset.datasets for msg in collect_skipped(d)]
    return list(getattr(dataset, 'skipped', []))


def do_train(trainer, training_args, preprocessor, train_dataset):
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # model + tokenizer (processing_class)
    if trainer.is_world_process_zero():
        preprocessor['image'].save_pretrained(training_args.output_dir)
    trainer.save_state()  # trainer_state.json
    metrics = dict(result.metrics)
    skipped = collect_skipped(train_dataset)
    metrics['train_skipped_samples'] = len(skipped)
    if skipped:
        logger.warning('%d training samples were skipped as misaligned; first: %s', len(skipped), skipped[0])
    trainer.log_metrics('train', metrics)
    trainer.save_metrics('train', metrics, combined=False)


def do_multi_predict(trainer, multitest: dict):
    for name, entry in multitest.items():
        trainer.predict_and_score(entry['dataset'], entry['compute_metric'], prefix=f'multitest_{name}')


def main(argv=None):
    logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s', level=logging.INFO)
    _, model_args, data_args, training_args = prepare_args(argv)
    set_seed(training_args.seed)
    with training_args.main_process_first(desc='prepare data'):  # generate once, other ranks then read
        run_prepare_steps(data_args)
    model, preprocessor = build_model(model_args)
    datasets = prepare_data(data_args, model_args, preprocessor)

    pad_id = preprocessor['text'].pad_token_id
    trainer = MllmTrainer(
        model=model, args=training_args, processing_class=preprocessor['text'],
        train_dataset=datasets['train'], eval_dataset=datasets['validation'],
        data_collator=Collator(pad_id, 'right', **(data_args.get('collator_kwargs') or {})),
        eval_collator=Collator(pad_id, 'left'),
        gen_kwargs=data_args.get('gen_kwargs'), compute_metric=datasets['compute_metric'],
        callbacks=[TrainingCurveCallback(), EpochCallback(datasets['train'])],
    )
    if training_args.do_train:
        do_train(trainer, training_args, preprocessor, datasets['train'])
    if training_args.do_eval:
        trainer.evaluate()
    if training_args.do_predict:
        trainer.predict_and_score(datasets['test'], datasets['compute_metric'], prefix='test')
    if datasets['multitest']:
        do_multi_predict(trainer, datasets['multitest'])
    if trainer.is_world_process_zero():
        logger.info('outputs are in %s', os.path.abspath(training_args.output_dir))
    return trainer


if __name__ == '__main__':
    main()
