# The synthetic shapes REC data of the embedded demo: generated on first use (data_args.prepare),
# then read by the same RECDataset loader as RefCOCO. Its location is set here only.
__SHAPES_ROOT = 'data/shapes'

# Shapes of one fixed size, centred in the cells of a 5x3 grid (no jitter): the box of a shape is
# decided by its cell, which keeps the demo learnable on a CPU in minutes.
SHAPES_PREPARE = dict(type='generate_shapes_dataset', root=__SHAPES_ROOT, num_train=20000, num_test=200, seed=0,
                      cols=5, rows=3, cell=32, jitter=0.0, size_min=0.75, size_max=0.75)
# REC_shapes.json asks the question BEFORE the image ("Locate <expr>. <image>"): in a causal LM the image tokens
# then see the expression and each can mark "that is me", which the answer reads off. With the image first (as in
# REC.json) only the answer can bind words to image tokens: 0.54 after 10 min; query first: 0.92 (docs/demo.md).
SHAPES_REC = dict(
    train=dict(type='RECDataset', filename=__SHAPES_ROOT + '/train.jsonl', image_folder=__SHAPES_ROOT + '/images',
               template_file='REC_shapes.json', answer='<boxes>'),
    test=dict(type='RECDataset', filename=__SHAPES_ROOT + '/test.jsonl', image_folder=__SHAPES_ROOT + '/images',
              template_file='REC_shapes.json', answer='<boxes>'),
)
