"""Registers the demo's data generator as a FUNCTIONS entry, so a config can ask for it:
`data_args.prepare = [dict(type='generate_shapes_dataset', root=..., num_train=..., num_test=...)]`."""
import logging

from ..dataset.root import FUNCTIONS
from .shapes import chance_accuracy, generate_shapes_dataset

logger = logging.getLogger(__name__)


@FUNCTIONS.register_module(name='generate_shapes_dataset')
def prepare_shapes_dataset(root: str, num_train: int, num_test: int, seed: int = 0, **layout) -> dict:
    """Generate (or reuse) the shapes data and log the chance level of its test split."""
    info = generate_shapes_dataset(root, num_train, num_test, seed=seed, **layout)
    info['chance_accuracy'] = chance_accuracy(info['test_jsonl'])
    logger.info('shapes data in %s (%s); chance Acc@0.5 of answering with a random shape of the image: %.3f',
                root, 'reused' if info.get('skipped') else 'generated', info['chance_accuracy'])
    return info
from . import isekai_registry, llava_pretrain_synth  # noqa: E402,F401  (register their generate_* prepare steps)
