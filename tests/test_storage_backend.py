"""`read_image` behind optional storage backends: fsspec URLs, petrel `s3://`, and neither installed."""
import io
import subprocess
import sys
import types

import pytest
from PIL import Image

from mllm.dataset.utils import io as mio
from mllm.dataset.utils.io import DataFileError, read_image


def png_bytes(size=(7, 5), color=(1, 2, 3)):
    buf = io.BytesIO()
    Image.new('RGB', size, color).save(buf, format='PNG')
    return buf.getvalue()


def test_importing_the_data_side_needs_no_backend():
    # transformers may import fsspec itself (through peft or huggingface_hub when installed), so the
    # backends are blocked after transformers is loaded: any import of one by mllm then fails.
    code = ('import sys, torch, transformers, transformers.trainer\n'
            'for m in ("fsspec", "petrel_client"):\n'
            '    sys.modules[m] = None\n'
            'import mllm.dataset, mllm.dataset.utils.io, mllm.dataset.builder, mllm.models.builder\n'
            'print("imported")')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == 'imported', out.stderr[-2000:]


def test_fsspec_url():
    fsspec = pytest.importorskip('fsspec')
    with fsspec.open('memory://bucket/img.png', 'wb') as f:
        f.write(png_bytes())
    image = read_image('memory://bucket/img.png')
    assert image.size == (7, 5) and image.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(DataFileError, match='image not found: memory://bucket/absent.png'):
        read_image('memory://bucket/absent.png')


def test_petrel_client_serves_s3_paths(monkeypatch):
    store = {'s3://coco/train2014/a.png': png_bytes((4, 9), (9, 8, 7))}

    class Client:
        def get(self, path):
            return store.get(path)

    module = types.ModuleType('petrel_client.client')
    module.Client = Client
    monkeypatch.setitem(sys.modules, 'petrel_client', types.ModuleType('petrel_client'))
    monkeypatch.setitem(sys.modules, 'petrel_client.client', module)
    monkeypatch.setattr(mio, '_PETREL_CLIENT', None)
    image = read_image('s3://coco/train2014/a.png')
    assert image.size == (4, 9) and image.getpixel((3, 8)) == (9, 8, 7)
    with pytest.raises(DataFileError, match='s3://coco/train2014/b.png'):
        read_image('s3://coco/train2014/b.png')


def test_no_backend_installed_gives_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, 'fsspec', None)  # import fsspec -> ImportError
    monkeypatch.setitem(sys.modules, 'petrel_client', None)
    monkeypatch.setitem(sys.modules, 'petrel_client.client', None)
    with pytest.raises(DataFileError, match='pip install fsspec'):
        read_image('s3://bucket/x.png')
