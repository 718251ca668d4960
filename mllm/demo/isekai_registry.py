"""Registers the synthetic ISEKAI generator as a FUNCTIONS entry, so a config can ask for it:
`data_args.prepare = [dict(type='generate_isekai_synth', root=..., num_seen=..., num_unseen=...,
images_per_concept=..., image_size=64, seed=0)]`."""
import logging

from ..dataset.root import FUNCTIONS
from .isekai_synth import generate_isekai_synth

logger = logging.getLogger(__name__)


@FUNCTIONS.register_module(name='generate_isekai_synth')
def prepare_isekai_synth(root: str, **kwargs) -> dict:
    """Generate (or reuse) the synthetic ISEKAI data under `root` and log its size."""
    info = generate_isekai_synth(root, **kwargs)
    counts = info['counts']
    logger.info('synthetic ISEKAI data in %s (%s): %d seen / %d unseen concepts, %d images; chance accuracy of '
                'naming one of the two support concepts at random: 0.5', root,
                'reused' if info.get('skipped') else 'generated', counts['seen'], counts['unseen'], counts['images'])
    return info
