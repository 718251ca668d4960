"""Trainer callbacks: wall-clock time in every log entry, and a training-curve PNG at the end.

`loss_curve.png` (next to trainer_state.json) shows the training loss against the step and, when the
run evaluates during training, the evaluation accuracy on a second axis.
"""
from __future__ import annotations

import math
import os
import time

from transformers import TrainerCallback


def plot_training_curve(log_history: list[dict], path: str) -> bool:
    """Plot train loss (and eval accuracy) from `log_history`; False when there is nothing to plot."""
    losses = [(e['step'], e['loss']) for e in log_history if 'loss' in e and 'step' in e]
    if not losses:
        return False
    accuracy = [(e['step'], e['eval_accuracy']) for e in log_history if 'eval_accuracy' in e and 'step' in e]
    import matplotlib  # imported lazily: only rank 0 at the end of training needs it
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s for s, _ in losses], [v for _, v in losses], color='tab:blue', label='train loss')
    ax.set_xlabel('step')
    ax.set_ylabel('train loss')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    if accuracy:
        right = ax.twinx()
        right.plot([s for s, _ in accuracy], [v for _, v in accuracy], 'o-', color='tab:orange', label='eval accuracy')
        right.set_ylabel('eval accuracy')
        right.set_ylim(0, 1)
    fig.legend(loc='upper center', ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


class TrainingCurveCallback(TrainerCallback):
    """Adds `elapsed_s` (seconds since training began) to each log entry; plots the curve at the end."""

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history and hasattr(self, '_start'):
            state.log_history[-1]['elapsed_s'] = round(time.perf_counter() - self._start, 2)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_training_curve(state.log_history, os.path.join(args.output_dir, 'loss_curve.png'))


class EpochCallback(TrainerCallback):
    """Tell the training dataset which epoch begins, so mixtures can redraw subsets and order.

    accelerate forwards `set_epoch` to a dataset only when the sampler lacks one (it never does
    under the Trainer), so the callback calls it directly; every rank computes the same table.
    The epoch is floor(state.epoch): a run resumed at state.epoch = 2.6 continues epoch 2, the one
    it stopped in (the Trainer resumes there), where round() would have jumped to epoch 3's table.
    """

    def __init__(self, train_dataset):
        self.train_dataset = train_dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.train_dataset, 'set_epoch'):
            # an epoch's last step sets state.epoch = epoch + n / n, an exact integer, so floor is safe
            self.train_dataset.set_epoch(math.floor(state.epoch or 0))
