"""File access for datasets: JSONL reading with file:line errors and one `read_image` entry point.

Images normally live on a local disk. A path with a URL scheme is read through an optional
storage backend, imported only when such a path is read (nothing here needs one to import):
- `s3://` with `petrel_client` installed (the Ceph/petrel client of many GPU clusters): its Client;
- any scheme with `fsspec` installed (`s3://` via s3fs, `gs://`, `http://`, `memory://`, ...).
"""
from __future__ import annotations

import io
import json
import os

from PIL import Image


class DataFileError(ValueError):
    """A data file is missing or holds a record that cannot be read."""


def read_jsonl(path: str) -> list[dict]:
    """Read a JSONL file; a malformed line raises an error naming the file and the line number."""
    if not os.path.isfile(path):
        raise DataFileError(f"annotation file not found: {path}")
    records = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            record['__source__'] = f"{path}:{lineno}"
            records.append(record)
    return records


def read_json(path: str):
    """Read a whole JSON file; a syntax error names the file, line and column."""
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def _has_scheme(path: str) -> bool:
    scheme, sep, _ = path.partition('://')
    return bool(sep) and scheme.isalnum()


_PETREL_CLIENT = None


def _read_remote(path: str) -> bytes:
    global _PETREL_CLIENT
    if path.startswith('s3://'):
        try:
            from petrel_client.client import Client  # optional Ceph backend
        except ImportError:
            pass
        else:
            if _PETREL_CLIENT is None:  # one client per process: it holds connections
                _PETREL_CLIENT = Client()
            data = _PETREL_CLIENT.get(path)
            if data is None:
                raise DataFileError(f"image not found: {path} (petrel_client returned nothing)")
            return bytes(data)
    try:
        import fsspec  # optional storage backend
    except ImportError as e:
        raise DataFileError(f"reading {path} needs an optional storage backend: pip install fsspec "
                            "(or petrel_client for s3:// on Ceph)") from e
    try:
        with fsspec.open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        raise DataFileError(f"image not found: {path}") from None


def read_image(path: str, mode: str = 'RGB') -> Image.Image:
    """Open an image from a local path or, through an optional backend, from a URL; convert to `mode`."""
    if _has_scheme(path):
        image = Image.open(io.BytesIO(_read_remote(path)))
    else:
        if not os.path.isfile(path):
            raise DataFileError(f"image not found: {path}")
        image = Image.open(path)
    try:
        return image.convert(mode)
    except OSError as e:
        raise DataFileError(f"image cannot be decoded: {path} ({e})") from None
