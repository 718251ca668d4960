"""`MllmTrainer`: transformers' Seq2SeqTrainer with generation-based evaluation for mllm.

- training batches use the right-padding collator, evaluation/prediction batches the left-padding
  one (generation needs prompts aligned at the right);
- `prediction_step` generates with the config's `gen_kwargs` and returns only the new tokens;
- `evaluate` / `predict_and_score` decode predictions and references, score them with a METRICS
  entry (given each sample's `dataset.meta(i)` too, e.g. the ten VQAv2 answers), and write one
  JSONL line per sample (dataset order, rank 0, overwritten on re-runs) with the metric's verdict,
  plus `<prefix>_results.json`.
"""
from __future__ import annotations

import inspect
import json
import os

import numpy as np
import torch
from transformers import Seq2SeqTrainer

from ..dataset.root import IGNORE_INDEX


class MllmTrainer(Seq2SeqTrainer):
    def __init__(self, *args, eval_collator=None, gen_kwargs=None, compute_metric=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator
        self.gen_kwargs = dict(gen_kwargs or {})
        self.compute_metric = compute_metric

    # -- data ----------------------------------------------------------------------------------
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
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        inputs = self._prepare_inputs(inputs)
        references = inputs.pop('labels', None)
        kwargs = {**self.gen_kwargs, **gen_kwargs}
        with torch.no_grad():
            output = self.accelerator.unwrap_model(self.model).generate(**inputs, **kwargs)
        new_tokens = output[:, inputs['input_ids'].shape[1]:]
        if new_tokens.shape[1] == 0:  # keep a column so batches concatenate
            new_tokens = torch.full((output.shape[0], 1), IGNORE_INDEX, device=output.device)
        return None, new_tokens, references

    def _decode(self, token_array) -> list[str]:
        tokenizer = self.processing_class
        array = np.where(token_array == IGNORE_INDEX, tokenizer.pad_token_id, token_array)
        return [text.strip() for text in tokenizer.batch_decode(array, skip_special_tokens=True)]

    def predict_and_score(self, dataset, compute_metric=None, prefix: str = 'test') -> dict:
        """Generate for every sample of `dataset`, score, write `<prefix>_extra_prediction.jsonl`."""
        if dataset is None:
            split = {'eval': 'validation', 'test': 'test'}.get(prefix, prefix)
            raise ValueError(f"'{prefix}' was asked for but no dataset is configured: set data_args.{split}")
        output = self.predict(dataset, metric_key_prefix=prefix)
        predictions = self._decode(output.predictions)
        references = self._decode(output.label_ids)
        metrics = {k: v for k, v in output.metrics.items() if k.endswith(('_runtime', '_samples_per_second'))}
        verdicts = [{} for _ in predictions]
        metas = [dataset.meta(i) for i in range(len(dataset))] if hasattr(dataset, 'meta') else [{}] * len(predictions)
        if compute_metric is not None:
            if 'metas' in inspect.signature(compute_metric).parameters:
                scores, verdicts = compute_metric(predictions, references, metas=metas)
            else:
                scores, verdicts = compute_metric(predictions, references)
            metrics.update({f'{prefix}_{k}': v for k, v in scores.items()})
            clash = {'id', 'pred', 'target', 'meta'} & {k for v in verdicts for k in v}
            if clash:  # a verdict must not hide the generated text or the reference in the JSONL
                raise ValueError(f"{type(compute_metric).__name__}'s verdicts use the reserved key(s) {sorted(clash)}")
        if self.is_world_process_zero():
            self._write_predictions(prefix, predictions, references, verdicts, metas)
            self.save_metrics(prefix, metrics, combined=False)
        self.log_metrics(prefix, metrics)
        return metrics

    def _write_predictions(self, prefix, predictions, references, verdicts, metas):
        os.makedirs(self.args.output_dir, exist_ok=True)
        path = os.path.join(self.args.output_dir, f'{prefix}_extra_prediction.jsonl')
        with open(path, 'w', encoding='utf-8') as f:  # 'w': a re-run replaces, never appends
            for i, (pred, ref, verdict, meta) in enumerate(zip(predictions, references, verdicts, metas, strict=True)):
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
