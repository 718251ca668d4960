"""Synthetic LLaVA two-stage data for the tiny variants of config/llava_pretrain.py and
config/llava_finetune_from_pretrain.py: shapes images with captions (stage 1) and instructions (stage 2), written
in the public formats so the real loader (`LLaVAInstructDataset`) reads them unchanged.

Files under `root`:
  images/<5 digits>/<9 digits>.jpg   one coloured shape (mllm.demo.shapes' palette and drawing) on a light
                      background, image_size x image_size, JPEG; the folder is the first 5 digits of the id, as in
                      LLaVA-Pretrain's images.zip ('00453/004539375.jpg');
  captions.json       the layout of LLaVA-Pretrain's blip_laion_cc_sbu_558k.json: ONE JSON array of
                      {"id", "image", "conversations": [{"from": "human", "value": "<instruction>\\n<image>" or
                      "<image>\\n<instruction>"}, {"from": "gpt", "value": "<caption>"}]};
  instruct.json       the layout of llava_v1_5_mix665k.json: one JSON array, image records with two exchanges about
                      the same images, plus `num_text_only` text-only records (no "image" key), as mix665k has;
  info.json           the arguments and counts; written last, so its presence with the same arguments means the
                      data is complete and is reused.
Same arguments -> identical files. Registered as the `data_args.prepare` step `generate_llava_pretrain_synth`;
run `python -m mllm.demo.llava_pretrain_synth --root DIR` to write it by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import random

from ..dataset.root import FUNCTIONS
from .shapes import COLORS, SHAPE_TYPES, _draw_shape

VERSION = 1
# our own phrasings of a caption request (the real file draws from a list of this kind)
CAPTION_REQUESTS = ('Describe the image briefly.', 'Give a short caption of the picture.',
                    'What is in this photo? Answer in a few words.', 'Write a one-line summary of the image.')
TEXT_ONLY = (('What is a triangle?', 'A triangle is a shape with three sides.'),
             ('Name a colour.', 'Blue is a colour.'))


def _image_and_caption(rng: random.Random, size: int):
    from PIL import Image, ImageDraw

    colour, kind = rng.choice(sorted(COLORS)), rng.choice(SHAPE_TYPES)
    image = Image.new('RGB', (size, size), tuple(236 + rng.randint(-6, 6) for _ in range(3)))
    side = rng.randint(size // 3, size * 3 // 4)
    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
    _draw_shape(ImageDraw.Draw(image), kind, [x0, y0, x0 + side, y0 + side], COLORS[colour])
    return image, colour, kind


def generate_llava_pretrain_synth(root: str, num_images: int = 16, image_size: int = 32, num_text_only: int = 1,
                                  seed: int = 0) -> dict:
    """Write (or reuse) the data under `root`; returns the paths and counts."""
    params = dict(num_images=num_images, image_size=image_size, num_text_only=num_text_only, seed=seed,
                  version=VERSION)
    info = dict(params, root=root, image_folder=os.path.join(root, 'images'),
                captions=os.path.join(root, 'captions.json'), instruct=os.path.join(root, 'instruct.json'))
    info_path = os.path.join(root, 'info.json')
    if os.path.isfile(info_path):
        with open(info_path) as f:
            if json.load(f).get('params') == params:
                return dict(info, skipped=True)
    rng = random.Random(seed)
    captions, instruct, ids = [], [], set()
    while len(ids) < num_images:
        sample_id = f'{rng.randrange(10 ** 9):09d}'
        if sample_id in ids:
            continue
        ids.add(sample_id)
        name = f'{sample_id[:5]}/{sample_id}.jpg'
        image, colour, kind = _image_and_caption(rng, image_size)
        os.makedirs(os.path.join(info['image_folder'], sample_id[:5]), exist_ok=True)
        image.save(os.path.join(info['image_folder'], name), quality=95)
        request = rng.choice(CAPTION_REQUESTS)
        human = f'{request}\n<image>' if rng.random() < 0.5 else f'<image>\n{request}'
        captions.append({'id': sample_id, 'image': name, 'conversations': [
            {'from': 'human', 'value': human}, {'from': 'gpt', 'value': f'a {colour} {kind} on a light background'}]})
        instruct.append({'id': sample_id, 'image': name, 'conversations': [
            {'from': 'human', 'value': '<image>\nWhat colour is the shape?'},
            {'from': 'gpt', 'value': f'The shape is {colour}.'},
            {'from': 'human', 'value': 'And which shape is it?'},
            {'from': 'gpt', 'value': f'It is a {kind}.'}]})
    for k in range(num_text_only):
        question, answer = TEXT_ONLY[k % len(TEXT_ONLY)]
        instruct.append({'id': f'text_only_{k}', 'model': '', 'conversations': [
            {'from': 'human', 'value': question}, {'from': 'gpt', 'value': answer}]})
    for path, records in ((info['captions'], captions), (info['instruct'], instruct)):
        with open(path + '.tmp', 'w', encoding='utf-8') as f:
            json.dump(records, f, ensure_ascii=False)
        os.replace(path + '.tmp', path)
    with open(info_path, 'w') as f:
        json.dump({'params': params, 'counts': {'captions': len(captions), 'instruct': len(instruct)}}, f, indent=1)
    return dict(info, skipped=False)


@FUNCTIONS.register_module(name='generate_llava_pretrain_synth')
def prepare_llava_pretrain_synth(root: str, **kwargs) -> dict:
    """The `data_args.prepare` step: generate (or reuse) the synthetic LLaVA two-stage data under `root`."""
    return generate_llava_pretrain_synth(root, **kwargs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', required=True)
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument('--image-size', type=int, default=32)
    parser.add_argument('--num-text-only', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    info = generate_llava_pretrain_synth(args.root, args.num_images, args.image_size, args.num_text_only, args.seed)
    print(json.dumps(info, indent=1))


if __name__ == '__main__':
    main()
