"""File helpers shared by the converters: read an official JSON file, write our JSONL."""
from __future__ import annotations

import json
import os


def read_json(path: str, error: type[Exception] = ValueError):
    """The parsed file; a missing file raises FileNotFoundError, bad JSON `error` naming file:line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def write_jsonl(records: list[dict], path: str) -> None:
    """One JSON object per line, UTF-8 text kept as is (no \\u escapes); the folder is created."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')


def find_file(name: str, folders: list[str]) -> str:
    """The first `<folder>/<name>` that exists; FileNotFoundError naming every place looked otherwise.

    For releases that unzip either flat or into sub-folders (the message lists all candidates so the
    user sees which layouts were tried).
    """
    candidates = [os.path.join(folder, name) for folder in folders]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{name} not found: looked for " + ' and '.join(candidates))
