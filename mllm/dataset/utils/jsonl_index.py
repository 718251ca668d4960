"""`JsonlRecords`: a JSONL file read through a byte-offset index instead of a list of parsed dicts.

A list of dicts costs about 1.5 KB per REC record in every rank (and ~10 s of parsing per million
lines before training starts). Here the build only finds the line starts with numpy (one int64 per
record, no JSON parsing); a record is parsed when it is accessed, through an `mmap` that each process
opens for itself. Errors name `file:line` as `read_jsonl` words them, but are raised at access;
`missing_fields` checks required keys at load by a byte search. benchmarks/jsonl_index.py measures it.
"""
from __future__ import annotations

import json
import mmap
import operator
import os
from collections.abc import Iterator, Sequence
from itertools import repeat

import numpy as np

from .io import DataFileError

# Bytes scanned (or read and split) per step. Measured on 1M lines: 4 MiB is as fast as larger steps, and
# 32 MiB temporaries left twice the RSS behind (the allocator keeps freed blocks of that size).
_CHUNK = 1 << 22
_BOM = b'\xef\xbb\xbf'
# What str.strip() removes among ASCII bytes: a line made only of these is skipped, as read_jsonl skips it.
_BLANK = b' \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f'
_IS_BLANK = np.zeros(256, dtype=bool)
_IS_BLANK[list(_BLANK)] = True
_DECODER = json.JSONDecoder()


class JsonlRecords(Sequence):
    """The records (dicts, each tagged `__source__ = 'path:line'`) of a JSONL file, parsed on access.

    Blank lines are skipped; line numbers are the file's own, 1-based. Each access returns a new dict
    and, when `required` names fields, raises DataFileError for a record lacking one. Picklable (the path
    and the offsets travel, not the mapping), and safe to use after a fork.
    """

    def __init__(self, path: str, required: Sequence[str] = ()):
        if not os.path.isfile(path):
            raise DataFileError(f"annotation file not found: {path}")
        self.path, self.required = path, tuple(required)
        self.size = os.path.getsize(path)
        self.starts, self.blank_after = _index(os.fspath(path), self.size)
        self._mm, self._pid = None, None

    # -- the index -----------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return self.starts.nbytes + self.blank_after.nbytes

    def lineno(self, index: int) -> int:
        """The 1-based file line of record `index` (blank lines before it counted)."""
        return self._lineno(self._check_index(index))

    def _lineno(self, index: int) -> int:
        if not len(self.blank_after):  # the usual file: record i is line i + 1
            return index + 1
        return index + 1 + int(np.searchsorted(self.blank_after, index, side='right'))

    def linenos(self) -> np.ndarray:
        """The file line of every record, as an int64 array."""
        indices = np.arange(len(self.starts), dtype=np.int64)
        return indices + 1 + np.searchsorted(self.blank_after, indices, side='right')

    def source(self, index: int) -> str:
        """'path:line' of record `index`, as its `__source__` tag says."""
        return f"{self.path}:{self.lineno(index)}"

    # -- Sequence ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._read(i) for i in range(*index.indices(len(self)))]
        return self._read(self._check_index(index))

    def __iter__(self) -> Iterator[dict]:
        # Reads chunks in file order (a pass over all records, e.g. a subclass's load-time checks):
        # cheaper than one mapped read per record. A line that fails goes through _read for its message.
        with self._open() as f:
            for first, stop, lines, rows in self._chunk_lines(f):
                line_of_first = self._lineno(first)  # rows count file lines from record `first`'s
                for index, row in zip(range(first, stop), rows.tolist(), strict=True):
                    try:
                        record = _DECODER.decode(lines[row].decode('utf-8'))
                    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                        record = None
                    if isinstance(record, dict):
                        record['__source__'] = f"{self.path}:{line_of_first + row}"
                        yield self._check_required(record)
                    else:
                        yield self._read(index)  # raises read_jsonl's message for this line

    def __repr__(self):
        return f"JsonlRecords({self.path!r}, {len(self)} records)"

    def __getstate__(self):
        # The mapping belongs to one process; the receiver maps the file again on first access.
        return {'path': self.path, 'required': self.required, 'size': self.size, 'starts': self.starts,
                'blank_after': self.blank_after}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._mm, self._pid = None, None

    # -- reading -------------------------------------------------------------------------------
    def _check_index(self, index) -> int:
        index = operator.index(index)
        n = len(self.starts)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"record index out of range for {n} records of {self.path}")
        return index

    def _open(self):
        """The file, opened for reading; one whose size changed since the build is refused, not misread."""
        f = open(self.path, 'rb')  # noqa: SIM115 -- the caller closes it
        size = os.fstat(f.fileno()).st_size
        if size != self.size:
            f.close()
            raise DataFileError(f"{self.path}: changed since it was indexed ({self.size} bytes, now {size})")
        return f

    def _map(self) -> mmap.mmap:
        # A mapping inherited through fork would work, but each process opening its own keeps workers
        # independent of the parent's file objects; the pid tells an inherited one apart.
        if self._pid != os.getpid():
            with self._open() as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._pid = os.getpid()
        return self._mm

    def _line(self, index: int) -> str:
        """Line `index` as read_jsonl sees it in text mode: ending in '\\n' (not '\\r\\n') unless it is last."""
        mm = self._map()
        start = int(self.starts[index])
        end = mm.find(b'\n', start)
        raw = mm[start:] if end < 0 else mm[start:end + 1]
        if raw.endswith(b'\r\n'):
            raw = raw[:-2] + b'\n'
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError as e:
            raise DataFileError(f"{self.path}:{self._lineno(index)}: not valid UTF-8 "
                                f"({e.reason} at byte {e.start + 1})") from None

    def _read(self, index: int) -> dict:
        return self._check_required(self._parse(index))

    def _check_required(self, record: dict) -> dict:
        missing = [k for k in self.required if k not in record]
        if missing:
            raise DataFileError(f"{record['__source__']}: missing field(s) {missing}")
        return record

    def _parse(self, index: int) -> dict:
        """Record `index`, tagged; JSON errors as read_jsonl words them."""
        line, source = self._line(index), f"{self.path}:{self._lineno(index)}"
        try:
            record = _DECODER.decode(line)  # what json.loads(line) calls
        except json.JSONDecodeError as e:
            raise DataFileError(f"{source}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataFileError(f"{source}: expected a JSON object, got {type(record).__name__}")
        record['__source__'] = source
        return record

    # -- load-time check -----------------------------------------------------------------------
    def missing_fields(self, required: Sequence[str] | None = None,
                       limit: int | None = 1) -> list[tuple[int, list[str]]]:
        """(record index, missing fields) of records lacking a `required` key (default: the
        constructor's), in file order, at most `limit` (None: all).

        A byte search for each quoted key (`"img_path"`) finds the lines that cannot have it without
        parsing the others; only those lines are parsed, to confirm (a key written with escapes is not
        reported). A line holding the key's text elsewhere (as a value) passes here: checking at access
        catches it. Lines it parses raise JSON errors here rather than at access.
        """
        required = self.required if required is None else tuple(required)
        if not required or not len(self):
            return []
        keys = [json.dumps(k, ensure_ascii=False).encode('utf-8') for k in required]
        found = []
        # Plain reads, not the mapping: mapped pages would stay in this process's RSS.
        with self._open() as f:
            for first, stop, lines, rows in self._chunk_lines(f):
                lacking = np.zeros(stop - first, dtype=bool)
                for key in keys:
                    # map + operator.contains: the per-line test runs without a Python frame per line
                    has = np.fromiter(map(operator.contains, lines, repeat(key)), dtype=bool, count=len(lines))
                    lacking |= ~has[rows]
                for index in first + np.flatnonzero(lacking):
                    record = self._parse(int(index))
                    missing = [k for k in required if k not in record]
                    if missing:
                        found.append((int(index), missing))
                        if limit is not None and len(found) >= limit:
                            return found
        return found

    def _chunk_lines(self, f) -> Iterator[tuple[int, int, list[bytes], np.ndarray]]:
        """(first, stop, lines, rows) for record ranges of about _CHUNK bytes: the file's lines from
        record `first`'s start to record `stop`'s, split at b'\\n', and the row of each record among them."""
        # Blank lines are among the lines too: each record's row comes from its line number.
        linenos = self.linenos() if len(self.blank_after) else None
        first, n = 0, len(self.starts)
        while first < n:
            stop = max(first + 1, int(np.searchsorted(self.starts, self.starts[first] + _CHUNK, side='left')))
            begin, end = int(self.starts[first]), int(self.starts[stop]) if stop < n else self.size
            f.seek(begin)
            lines = f.read(end - begin).split(b'\n')
            rows = np.arange(stop - first) if linenos is None else linenos[first:stop] - linenos[first]
            yield first, stop, lines, rows
            first = stop


def _index(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(start offset of each non-blank line, records before each blank line) of the file at `path`."""
    empty = np.zeros(0, dtype=np.int64)
    if size == 0:
        return empty, empty
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = np.frombuffer(mm, dtype=np.uint8)
        try:
            newlines = np.concatenate([np.flatnonzero(buf[a:a + _CHUNK] == ord('\n')) + a
                                       for a in range(0, size, _CHUNK)]).astype(np.int64, copy=False)
            starts = np.concatenate([[0], newlines + 1])
            ends = np.concatenate([newlines, [size]])
            if starts[-1] == size:  # the file ends with a newline: no line after it
                starts, ends = starts[:-1], ends[:-1]
            if mm[:3] == _BOM:  # a UTF-8 byte-order mark is no part of line 1's JSON
                starts[0] = 3
            # A blank line is empty or, rarely, starts and ends with blank bytes (then looked at whole).
            blank = starts >= ends
            edge = ~blank & _IS_BLANK[buf[np.minimum(starts, size - 1)]] & _IS_BLANK[buf[np.maximum(ends - 1, 0)]]
            for k in np.flatnonzero(edge):
                blank[k] = not mm[int(starts[k]):int(ends[k])].strip(_BLANK)
        finally:
            del buf  # the mapping cannot close while numpy views it
    blank_lines = np.flatnonzero(blank)
    # For line numbers: a blank line's count of records before it (its line index less earlier blanks).
    blank_after = (blank_lines - np.arange(len(blank_lines))).astype(np.int64)
    return np.ascontiguousarray(starts[~blank]), blank_after
