"""Trainer callbacks: a loss-curve PNG written next to trainer_state.json when training ends."""
from __future__ import annotations

import os

from transformers import TrainerCallback


def plot_loss_curve(log_history: list[dict], path: str) -> bool:
    """Plot training loss (and eval metrics' steps) from `log_history`; False when nothing to plot."""
    points = [(e['step'], e['loss']) for e in log_history if 'loss' in e and 'step' in e]
    if not points:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s for s, _ in points], [v for _, v in points], label='train loss')
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


class LossCurveCallback(TrainerCallback):
    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_loss_curve(state.log_history, os.path.join(args.output_dir, 'loss_curve.png'))
