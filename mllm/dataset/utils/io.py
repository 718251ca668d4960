"""File access for datasets: JSONL reading with file:line errors and one `read_image` entry point.

Images normally live on a local disk. A path with a URL scheme (`s3://`, `http://`, ...) is
read through `fsspec` when that optional package is installed; nothing here needs it to import.
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


def _has_scheme(path: str) -> bool:
    scheme, sep, _ = path.partition('://')
    return bool(sep) and scheme.isalnum()


def read_image(path: str, mode: str = 'RGB') -> Image.Image:
    """Open an image from a local path or, with fsspec installed, from a URL; convert to `mode`."""
    if _has_scheme(path):
        try:
            import fsspec  # optional storage backend
        except ImportError as e:
            raise DataFileError(f"reading {path} needs the optional package fsspec (pip install fsspec)") from e
        with fsspec.open(path, 'rb') as f:
            data = f.read()
        image = Image.open(io.BytesIO(data))
    else:
        if not os.path.isfile(path):
            raise DataFileError(f"image not found: {path}")
        image = Image.open(path)
    try:
        return image.convert(mode)
    except OSError as e:
        raise DataFileError(f"image cannot be decoded: {path} ({e})") from None
