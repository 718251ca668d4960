"""Shared fixtures: the tiny offline model/preprocessor (built once) and a small on-disk REC dataset."""
import json
import os

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

import pytest
import torch
from hypothesis import settings
from PIL import Image

settings.register_profile('mllm-tests', database=None, deadline=None)
settings.load_profile('mllm-tests')

# (file name, (width, height), expression, pixel bbox) -- non-square images, one box on the border.
REC_RECORDS = [
    ('wide.png', (96, 64), 'the red circle', [10, 5, 50, 40]),
    ('tall.png', (64, 96), 'the blue square', [0, 48, 64, 96]),  # touches left, right and bottom border
    ('square.png', (80, 80), 'the green triangle', [20, 20, 60, 70]),
]


@pytest.fixture(scope='session')
def tiny_llava():
    """(model, LlavaFamily) of the tiny offline LLaVA; built at most once per test session."""
    from mmengine.config import ConfigDict

    from mllm.models.builder import build_model

    return build_model(ConfigDict(model_name_or_path='tiny'))


@pytest.fixture(scope='session')
def family(tiny_llava):
    return tiny_llava[1]


@pytest.fixture(scope='session')
def tiny(tiny_llava):
    """(model, preprocessor dict of SingleImageConvDataset) of the tiny offline LLaVA."""
    return tiny_llava[0], tiny_llava[1].preprocessor


@pytest.fixture(scope='session')
def preprocessor(tiny):
    return tiny[1]


def write_rec_files(root, records=REC_RECORDS, jsonl_name='rec.jsonl'):
    image_folder = root / 'images'
    image_folder.mkdir(exist_ok=True)
    lines = []
    for k, (name, size, expr, bbox) in enumerate(records):
        image = Image.new('RGB', size, (10 * k, 200, 30))
        image.putpixel((0, 0), (255, 0, 0))
        image.save(image_folder / name)
        lines.append(json.dumps({'img_path': name, 'expression': expr, 'bbox': bbox}))
    jsonl = root / jsonl_name
    jsonl.write_text('\n'.join(lines) + '\n')
    return jsonl


@pytest.fixture
def rec_data(tmp_path):
    """A Shikra-style REC JSONL with three PNGs (96x64, 64x96, 80x80); returns a dict of paths and records."""
    jsonl = write_rec_files(tmp_path)
    return {'jsonl': str(jsonl), 'image_folder': str(tmp_path / 'images'), 'records': REC_RECORDS,
            'root': tmp_path}


@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test, restored afterwards: tiny models gain nothing from more, and on a
    busy 2-core machine two threads per op thrash (tiny generation measured ~30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
