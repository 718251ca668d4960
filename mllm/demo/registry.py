"""Registers the demo's data generator as a FUNCTIONS entry, so a config can ask for it:
`data_args.prepare = [dict(type='generate_shapes_dataset', root=..., num_train=..., num_test=...)]`."""
from ..dataset.root import FUNCTIONS
from .shapes import generate_shapes_dataset

FUNCTIONS.register_module(name='generate_shapes_dataset', module=generate_shapes_dataset)
