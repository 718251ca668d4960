"""`MllmTrainer`: transformers' Seq2SeqTrainer with generation-based evaluation for mllm.

- training batches use the right-padding collator, evaluation/prediction batches the left-padding
  one (generation needs prompts aligned at the right);
- `prediction_step` generates with the run's merged generation settings (engine/generation.py) and
  returns, per sample, its dataset index, whether the dataset skipped it, and the new tokens;
- `evaluate` / `predict_and_score` gather every rank's rows, drop the duplicates that pad an uneven
  last batch, restore dataset order, decode, score with a METRICS entry (given each sample's
  `dataset.meta(i)` too, e.g. the ten VQAv2 answers), and write one JSONL line per sample (dataset
  order, rank 0, overwritten on re-runs) with the metric's verdict, plus `<prefix>_results.json`.

Skipped evaluation samples (`data_args.on_bad_sample='skip'`) are written as `{"id": i, "skipped":
reason}` and counted in `<prefix>_skipped`. They stay in the metric's denominator, scored as an empty
answer (so skipping can never raise a score), unless the metric sets `exclude_skipped = True`.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os

import numpy as np
import torch
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel, register_fsdp_forward_method
from torch.utils.data import Dataset
from transformers import Seq2SeqTrainer
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.integrations.fsdp import is_fsdp_managed_module
from transformers.trainer_utils import _is_peft_model

from ..dataset.root import IGNORE_INDEX
from ..models.flamingo.freezing import mask_frozen_embedding_rows
from .checkpoint import load_checkpoint_weights
from .generation import describe, merge_generation_settings

logger = logging.getLogger('mllm')

# Columns in front of the generated tokens of every prediction row.
INDEX_COLUMN, SKIPPED_COLUMN, TOKENS_START = 0, 1, 2
RESERVED_VERDICT_KEYS = {'id', 'pred', 'target', 'meta', 'skipped'}


class IndexedDataset(Dataset):
    """Adds `sample_index` to every sample, so gathered predictions can be put back in dataset order."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return dict(self.dataset[index], sample_index=index)


class MllmTrainer(Seq2SeqTrainer):
    def __init__(self, *args, eval_collator=None, gen_kwargs=None, compute_metric=None, stop_token_ids=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator
        self.compute_metric = compute_metric
        model = self.accelerator.unwrap_model(self.model)
        self.generation_config, sources = merge_generation_settings(
            getattr(model, 'generation_config', None), self.args, gen_kwargs, stop_token_ids)
        if self.args.process_index == 0:
            logger.info(describe(self.generation_config, sources))

    # -- checkpoints ---------------------------------------------------------------------------
    def _plain_weights(self, model) -> bool:
        """Whether the weights of `model` load from a plain model file (not FSDP / DeepSpeed shards, not adapters)."""
        return not (self.is_fsdp_enabled or self.is_deepspeed_enabled or _is_peft_model(model))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume: transformers' loader drops every renamed key with a warning; ours maps and checks them
        (engine/checkpoint.py)."""
        model = model if model is not None else self.model
        if not self._plain_weights(model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info('loading weights from %s', resume_from_checkpoint)
        load_checkpoint_weights(self.accelerator.unwrap_model(model), resume_from_checkpoint)

    def _load_best_model(self):
        if not self._plain_weights(self.model):
            return super()._load_best_model()
        logger.info('loading the best model from %s (score %s)', self.state.best_model_checkpoint,
                    self.state.best_metric)
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), self.state.best_model_checkpoint)

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        if getattr(model, '_flamingo_embedding_row_mask', None) is not None and not getattr(
                optimizer, '_mllm_row_mask_hook', False):
            # the Flamingo plan's frozen embedding rows, masked where FSDP2 leaves the gradient (freezing.py)
            optimizer.register_step_pre_hook(lambda *_: mask_frozen_embedding_rows(model))
            optimizer._mllm_row_mask_hook = True
        return optimizer

    # -- throughput (issue 11): hand every training batch to callbacks that count tokens ---------
    def training_step(self, model, inputs, num_items_in_batch=None):
        seen = dict(inputs)
        inputs = {k: v for k, v in inputs.items() if k != 'sample_lengths'}  # bookkeeping of packed batches
        for callback in self.callback_handler.callbacks:  # e.g. engine/throughput.py ThroughputCallback
            if hasattr(callback, 'on_batch'):
                callback.on_batch(seen)
        return super().training_step(model, inputs, num_items_in_batch)

    # -- data ----------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        """`--train_sampling_strategy group_by_length`: batches of similar length, image and text-only
        samples apart, from lengths estimated without opening images (transformers' own sampler would
        render every sample first). Other strategies are transformers' own."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != 'group_by_length' or not hasattr(dataset, 'lengths'):
            return super()._get_train_sampler(train_dataset)
        from ..dataset.lengths import ModalityLengthGroupedSampler, dataset_lengths

        return ModalityLengthGroupedSampler(
            lambda: dataset_lengths(dataset),  # re-read each epoch: mixtures may redraw their tables
            self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
            world_size=self.args.world_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def _get_collator_with_removed_columns(self, data_collator, description=None):
        # Our collators build exactly the model's inputs plus the bookkeeping columns (sample_index,
        # skipped) that prediction_step pops; transformers' column removal would drop those.
        return data_collator

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False,
                        dataloader_key=None):
        if is_training or self.eval_collator is None:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        finally:
            self.data_collator = train_collator

    # -- generation ----------------------------------------------------------------------------
    def _generating_module(self):
        """(module to call generate on, context to call it in, synced_gpus), as transformers' Seq2SeqTrainer does it.

        Under FSDP (1 or 2) and DeepSpeed ZeRO-3 the parameters are sharded: generation must run through the
        sharded module (its hooks gather each layer's parameters; FSDP1's root also needs `summon_full_params`
        for the parameters outside the wrapped layers), and every rank must keep stepping until the last one is
        done (`synced_gpus`), or the collectives of a rank that finished early leave the others waiting forever.
        """
        sharded = is_deepspeed_zero3_enabled() or is_fsdp_managed_module(self.model)
        context = contextlib.nullcontext()
        if isinstance(self.model, FullyShardedDataParallel):
            context = FullyShardedDataParallel.summon_full_params(self.model, writeback=False, recurse=False)
        module = self.model if is_fsdp_managed_module(self.model) else self.accelerator.unwrap_model(self.model)
        if isinstance(module, FullyShardedDataParallel):
            module = module.module  # FSDP1's wrapper has no generate; its root params are summoned above
        if isinstance(module, FSDPModule) and not getattr(module, '_mllm_generate_registered', False):
            # FSDP2 gathers the root's own parameters only around registered methods; generate runs the image
            # encoder outside forward. transformers registers it inside train() only, so a predict-only run would
            # fail with "mixed torch.Tensor and DTensor" (tests/test_fsdp2_cpu.py).
            register_fsdp_forward_method(module, 'generate')
            module._mllm_generate_registered = True
        return module, context, sharded

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        inputs = self._prepare_inputs(inputs)
        references = inputs.pop('labels', None)
        sample_index = inputs.pop('sample_index', None)
        skipped = inputs.pop('skipped', None)
        batch = inputs['input_ids'].shape[0]
        module, context, sharded = self._generating_module()
        gen_kwargs.setdefault('synced_gpus', sharded)
        with torch.no_grad(), context:
            output = module.generate(**inputs, generation_config=self.generation_config, **gen_kwargs)
        new_tokens = output[:, inputs['input_ids'].shape[1]:]
        if sample_index is None:
            sample_index = torch.full((batch,), -1, dtype=torch.long, device=output.device)
        if skipped is None:
            skipped = torch.zeros(batch, dtype=torch.long, device=output.device)
        prefix = torch.stack([sample_index.to(output.device), skipped.to(output.device)], dim=1)
        rows = torch.cat([prefix.to(new_tokens.dtype), new_tokens], dim=1)
        return None, rows, references

    def _decode(self, token_array) -> list[str]:
        tokenizer = self.processing_class
        array = np.where(token_array == IGNORE_INDEX, tokenizer.pad_token_id, token_array)
        return [text.strip() for text in tokenizer.batch_decode(array, skip_special_tokens=True)]

    def _in_dataset_order(self, predictions: np.ndarray, references: np.ndarray, num_samples: int):
        """Rows of the gathered arrays, one per dataset index in order (padding duplicates dropped)."""
        index = predictions[:, INDEX_COLUMN]
        if (index < 0).any():
            raise RuntimeError('prediction rows carry no sample index: the dataset was not wrapped in IndexedDataset')
        _, first = np.unique(index, return_index=True)  # sorted by index; first occurrence of each
        found = index[first]
        if len(found) != num_samples or found[0] != 0 or found[-1] != num_samples - 1:
            missing = sorted(set(range(num_samples)) - set(found.tolist()))[:10]
            raise RuntimeError(f"gathered predictions cover {len(found)} of {num_samples} samples; "
                               f"missing e.g. {missing}")
        return predictions[first], references[first]

    def predict_and_score(self, dataset, compute_metric=None, prefix: str = 'test') -> dict:
        """Generate for every sample of `dataset`, score, write `<prefix>_extra_prediction.jsonl`."""
        if dataset is None:
            split = {'eval': 'validation', 'test': 'test'}.get(prefix, prefix)
            raise ValueError(f"'{prefix}' was asked for but no dataset is configured: set data_args.{split}")
        output = self.predict(IndexedDataset(dataset), metric_key_prefix=prefix)
        rows, label_rows = self._in_dataset_order(output.predictions, output.label_ids, len(dataset))
        predictions = self._decode(rows[:, TOKENS_START:])
        references = self._decode(label_rows)
        skipped = {int(i): None for i in np.flatnonzero(rows[:, SKIPPED_COLUMN])}
        metrics = {k: v for k, v in output.metrics.items() if k.endswith(('_runtime', '_samples_per_second'))}
        for i in skipped:  # re-rendered here to read the reason; only skipped samples pay for it
            skipped[i] = dataset[i].get('skipped', 'skipped')
            predictions[i] = ''
        metrics[f'{prefix}_skipped'] = len(skipped)
        if skipped:
            logger.warning('%s: %d of %d samples were skipped; first: %s', prefix, len(skipped), len(dataset),
                           next(iter(skipped.values())))
        metas = [dataset.meta(i) for i in range(len(dataset))] if hasattr(dataset, 'meta') else [{}] * len(predictions)
        verdicts = [{} for _ in predictions]
        if compute_metric is not None:
            scores, scored = self._score(compute_metric, predictions, references, metas, skipped)
            for i, verdict in scored.items():
                verdicts[i] = verdict
            metrics.update({f'{prefix}_{k}': v for k, v in scores.items()})
        if self.is_world_process_zero():
            self._write_predictions(prefix, predictions, references, verdicts, metas, skipped)
            self.save_metrics(prefix, metrics, combined=False)
        self.log_metrics(prefix, metrics)
        return metrics

    @staticmethod
    def _score(compute_metric, predictions, references, metas, skipped):
        """(scores, {index: verdict}); skipped samples are scored as empty answers unless the metric excludes them."""
        keep = [i for i in range(len(predictions))
                if not (getattr(compute_metric, 'exclude_skipped', False) and i in skipped)]
        args = ([predictions[i] for i in keep], [references[i] for i in keep])
        if 'metas' in inspect.signature(compute_metric).parameters:
            scores, verdicts = compute_metric(*args, metas=[metas[i] for i in keep])
        else:
            scores, verdicts = compute_metric(*args)
        clash = RESERVED_VERDICT_KEYS & {k for v in verdicts for k in v}
        if clash:  # a verdict must not hide the generated text or the reference in the JSONL
            raise ValueError(f"{type(compute_metric).__name__}'s verdicts use the reserved key(s) {sorted(clash)}")
        return scores, dict(zip(keep, verdicts, strict=True))

    def _write_predictions(self, prefix, predictions, references, verdicts, metas, skipped):
        os.makedirs(self.args.output_dir, exist_ok=True)
        path = os.path.join(self.args.output_dir, f'{prefix}_extra_prediction.jsonl')
        with open(path, 'w', encoding='utf-8') as f:  # 'w': a re-run replaces, never appends
            for i, (pred, ref, verdict, meta) in enumerate(zip(predictions, references, verdicts, metas, strict=True)):
                if i in skipped:
                    line = {'id': i, 'skipped': skipped[i]}
                else:
                    line = {'id': i, 'pred': pred, 'target': ref, **verdict}
                    if meta:
                        line['meta'] = meta
                f.write(json.dumps(line, ensure_ascii=False) + '\n')

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = 'eval', **gen_kwargs):
        # transformers may ask twice at one step (the step's eval and the epoch's end): answer once.
        key = (id(eval_dataset), metric_key_prefix, self.state.global_step)
        if self.state.global_step and getattr(self, '_last_eval', (None, None))[0] == key:
            return self._last_eval[1]
        metrics = self.predict_and_score(eval_dataset or self.eval_dataset, self.compute_metric, metric_key_prefix)
        self.log(metrics)
        self._last_eval = (key, metrics)
        return metrics
