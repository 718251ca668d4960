# The synthetic shapes REC data of the embedded demo: generated on first use (data_args.prepare),
# then read by the same RECDataset loader as RefCOCO. Its location is set here only.
__SHAPES_ROOT = 'data/shapes'

SHAPES_PREPARE = dict(type='generate_shapes_dataset', root=__SHAPES_ROOT, num_train=20000, num_test=200, seed=0)
SHAPES_REC = dict(
    train=dict(type='RECDataset', filename=__SHAPES_ROOT + '/train.jsonl', image_folder=__SHAPES_ROOT + '/images',
               template_file='REC_shapes.json'),
    test=dict(type='RECDataset', filename=__SHAPES_ROOT + '/test.jsonl', image_folder=__SHAPES_ROOT + '/images',
              template_file='REC_shapes.json'),
)
