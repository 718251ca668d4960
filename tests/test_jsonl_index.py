"""JsonlRecords: the byte-offset index agrees with a plain reading of the file, errors name file:line at
access, required fields are checked at load (byte search) and at access, and the index survives forked
DataLoader workers and pickling while holding 8 bytes per record."""
import json
import os
import pickle
import sys

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from mllm.dataset.single_image_dataset import RECDataset
from mllm.dataset.single_image_dataset.base import AnnotationDataset
from mllm.dataset.utils import jsonl_index
from mllm.dataset.utils.io import DataFileError, read_jsonl
from mllm.dataset.utils.jsonl_index import JsonlRecords

RECORDS = [
    {'img_path': 'a.jpg', 'expression': 'the café sign “ouvert”', 'bbox': [1, 2, 3, 4]},
    {'img_path': 'b.jpg', 'expression': '左边的狗 🐕', 'bbox': [0.5, 0, 10, 20.25]},
    {'img_path': 'c.jpg', 'expression': 'plain', 'bbox': [0, 0, 1, 1], 'width': 8, 'height': 8},
    {'img_path': 'ünïcode/d.jpg', 'expression': 'x' * 300, 'bbox': [2, 2, 5, 5]},
]


def plain_reading(data: bytes) -> list[tuple[int, int, dict]]:
    """(byte offset, 1-based line, record) of every non-blank line, found line by line in Python."""
    out, offset = [], 0
    if data.startswith(b'\xef\xbb\xbf'):
        data, offset = data[3:], 3
    for lineno, line in enumerate(data.split(b'\n'), start=1):
        if line.strip():
            out.append((offset, lineno, json.loads(line.decode('utf-8'))))
        offset += len(line) + 1
    return out


def layout(records, newline='\n', blanks=(), final_newline=True, bom=False) -> bytes:
    """The records as JSON lines; `blanks` maps a position in the output to the blank text put there."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    for position, text in sorted(dict(blanks).items()):
        lines.insert(position, text)
    text = newline.join(lines) + (newline if final_newline else '')
    return (b'\xef\xbb\xbf' if bom else b'') + text.encode('utf-8')


LAYOUTS = {
    'plain': dict(),
    'crlf': dict(newline='\r\n'),
    'no_final_newline': dict(final_newline=False),
    'crlf_no_final_newline': dict(newline='\r\n', final_newline=False),
    'blank_lines': dict(blanks={0: '', 2: '   ', 3: '\t', 6: '', 7: ' \r'}),
    'blank_crlf': dict(newline='\r\n', blanks={1: '', 4: '  '}),
    'bom': dict(bom=True),
    'bom_blank_first_line': dict(bom=True, blanks={0: ''}),
    'indented': dict(blanks={1: '  '}, newline='\n  '),  # lines that start with spaces are records too
    'blank_run_no_final_newline': dict(blanks={4: '', 5: '  ', 6: ''}, final_newline=False),
}


@pytest.fixture(params=[None, 37], ids=['default_chunk', 'tiny_chunk'])
def chunk(request, monkeypatch):
    # A tiny chunk puts chunk borders inside lines and multi-byte characters.
    if request.param:
        monkeypatch.setattr(jsonl_index, '_CHUNK', request.param)
    return request.param


@pytest.mark.parametrize('name', LAYOUTS)
def test_index_matches_a_plain_reading(tmp_path, chunk, name):
    data = layout(RECORDS * 3, **LAYOUTS[name])
    path = tmp_path / f'{name}.jsonl'
    path.write_bytes(data)
    expected = plain_reading(data)
    records = JsonlRecords(str(path))
    assert len(records) == len(expected) == 12
    assert records.starts.tolist() == [offset for offset, _, _ in expected]
    assert records.linenos().tolist() == [lineno for _, lineno, _ in expected]
    assert [records.lineno(i) for i in range(len(records))] == [lineno for _, lineno, _ in expected]
    got = list(records)
    assert [r.pop('__source__') for r in got] == [f'{path}:{lineno}' for _, lineno, _ in expected]
    assert got == [record for _, _, record in expected]
    if not name.startswith('bom'):  # read_jsonl reads the BOM into line 1 and fails there
        assert list(records) == read_jsonl(str(path))
    assert records.missing_fields(('img_path', 'expression', 'bbox')) == []


def test_offsets_are_bytes_not_characters(tmp_path):
    path = tmp_path / 'utf8.jsonl'
    path.write_bytes(layout(RECORDS))
    records = JsonlRecords(str(path))
    first = json.dumps(RECORDS[0], ensure_ascii=False)
    assert records.starts[1] == len(first.encode('utf-8')) + 1 > len(first) + 1
    assert records[1]['expression'] == '左边的狗 🐕'


def test_empty_and_blank_files(tmp_path):
    for name, data in {'empty': b'', 'blank': b'\n \n\r\n\t', 'bom_only': b'\xef\xbb\xbf'}.items():
        path = tmp_path / f'{name}.jsonl'
        path.write_bytes(data)
        records = JsonlRecords(str(path))
        assert len(records) == 0 and list(records) == [] and records[:] == []
        assert records.missing_fields(('img_path',)) == []
        with pytest.raises(IndexError):
            records[0]


def test_missing_file_raises_as_read_jsonl(tmp_path):
    missing = str(tmp_path / 'missing.jsonl')
    with pytest.raises(DataFileError) as ours:
        JsonlRecords(missing)
    with pytest.raises(DataFileError) as theirs:
        read_jsonl(missing)
    assert str(ours.value) == str(theirs.value) == f'annotation file not found: {missing}'


@pytest.mark.parametrize('bad, message', [
    ('{"a": 2,,}', 'not valid JSON'),
    ('{"a": ', 'not valid JSON'),
    ('[1, 2]', 'expected a JSON object, got list'),
    ('"text"', 'expected a JSON object, got str'),
])
def test_bad_line_raises_at_access_with_read_jsonls_message(tmp_path, bad, message):
    path = tmp_path / 'bad.jsonl'
    path.write_text('{"a": 1}\n\n' + bad + '\n{"a": 3}\n', encoding='utf-8')
    records = JsonlRecords(str(path))  # building parses nothing: no error yet
    assert len(records) == 3 and records[0]['a'] == 1 and records[2]['a'] == 3
    with pytest.raises(DataFileError) as ours:
        records[1]
    with pytest.raises(DataFileError) as theirs:
        read_jsonl(str(path))
    assert str(ours.value) == str(theirs.value)
    assert str(ours.value).startswith(f'{path}:3: {message}')
    with pytest.raises(DataFileError) as iterating:
        list(records)
    assert str(iterating.value) == str(theirs.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / 'latin1.jsonl'
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    records = JsonlRecords(str(path))
    with pytest.raises(DataFileError, match=r'latin1\.jsonl:2: not valid UTF-8'):
        records[1]


def test_indexing(tmp_path):
    path = tmp_path / 'r.jsonl'
    path.write_bytes(layout(RECORDS))
    records = JsonlRecords(str(path))
    assert records[-1]['img_path'] == 'ünïcode/d.jpg' and records[np.int64(2)]['expression'] == 'plain'
    assert [r['img_path'] for r in records[1:3]] == ['b.jpg', 'c.jpg']
    assert [r['img_path'] for r in records[::-2]] == ['ünïcode/d.jpg', 'b.jpg']
    for index in (4, -5):
        with pytest.raises(IndexError):
            records[index]
    first = records[0]
    first['expression'] = 'changed'
    first['bbox'].append(5)
    assert records[0] == dict(RECORDS[0], __source__=f'{path}:1')  # each access is a fresh dict
    assert records.source(-1) == f'{path}:4'


def test_missing_fields_byte_check(tmp_path, chunk):
    rows = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    rows[2] = json.dumps({'img_path': 'c.jpg', 'expression': 'no box'})
    path = tmp_path / 'fields.jsonl'
    path.write_text('\n\n'.join(rows) + '\n', encoding='utf-8')  # a blank line between records
    records = JsonlRecords(str(path))
    assert records.missing_fields(('img_path', 'bbox')) == [(2, ['bbox'])]
    assert records.source(2) == f'{path}:5'
    assert records.missing_fields(('bbox', 'width', 'height'), limit=None) == [
        (0, ['width', 'height']), (1, ['width', 'height']), (2, ['bbox', 'width', 'height']),
        (3, ['width', 'height'])]
    # A key written with an escape lacks the plain bytes but has the field: parsing clears it.
    path.write_text('{"img_path": "a", "\\u0062box": [0, 0, 1, 1]}\n', encoding='utf-8')
    assert JsonlRecords(str(path)).missing_fields(('img_path', 'bbox')) == []


def test_field_named_only_in_a_value_fails_at_access(tmp_path):
    path = tmp_path / 'value.jsonl'
    path.write_text('{"img_path": "a", "bbox": [1]}\n{"img_path": "a", "expression": "bbox"}\n', encoding='utf-8')
    records = JsonlRecords(str(path), required=('img_path', 'bbox'))
    assert records.missing_fields() == []  # the byte search sees '"bbox"' in line 2's value
    assert records[0]['bbox'] == [1]
    for read in (lambda: records[1], lambda: list(records)):
        with pytest.raises(DataFileError) as info:
            read()
        assert str(info.value) == f"{path}:2: missing field(s) ['bbox']"


class Plain(AnnotationDataset):
    required_fields = ('img_path', 'bbox')
    template_placeholders = ()

    def build_item(self, index, record):
        return {'bbox': record['bbox']}


def test_dataset_checks_fields_at_load_and_at_access(tmp_path):
    path = tmp_path / 'ds.jsonl'
    path.write_text('{"img_path": "a", "bbox": [1]}\n\n{"img_path": "a"}\n', encoding='utf-8')
    with pytest.raises(DataFileError) as info:
        Plain(str(path))
    assert str(info.value) == f"{path}:3: missing field(s) ['bbox']"
    path.write_text('{"img_path": "a", "bbox": [1]}\n\n{"img_path": "a", "note": "bbox"}\n', encoding='utf-8')
    ds = Plain(str(path))
    assert isinstance(ds.records, JsonlRecords) and len(ds) == 2
    assert ds[0] == {'bbox': [1], 'source': f'{path}:1'}
    with pytest.raises(DataFileError) as info:
        ds[1]
    assert str(info.value) == f"{path}:3: missing field(s) ['bbox']"
    # The base class's own check covers records from any loader, a plain list included.
    ds.records = [{'img_path': 'a', '__source__': 'list:7'}]
    with pytest.raises(DataFileError, match=r"^list:7: missing field\(s\) \['bbox'\]$"):
        ds[0]


def test_rec_dataset_names_the_line_after_blank_lines(tmp_path):
    path = tmp_path / 'rec.jsonl'
    good = json.dumps(RECORDS[0], ensure_ascii=False)
    path.write_text(f'{good}\n\n  \n{good}\n{{"img_path": "a.jpg", "bbox": [0, 0, 1, 1]}}\n', encoding='utf-8')
    with pytest.raises(DataFileError) as info:
        RECDataset(str(path))
    assert str(info.value) == f"{path}:5: missing field(s) ['expression']"


class Reader(Dataset):
    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        # Whether this process reads through a mapping it opened itself.
        return self.records[index], self.records._pid == os.getpid()


def test_forked_dataloader_workers_read_the_same_records(tmp_path):
    path = tmp_path / 'many.jsonl'
    path.write_bytes(layout(RECORDS * 25, blanks={3: '', 40: ' '}))
    records = JsonlRecords(str(path))
    assert records[0]  # the parent maps the file before the workers fork
    in_process = list(records)
    loader = DataLoader(Reader(records), batch_size=None, num_workers=2, multiprocessing_context='fork')
    read = list(loader)
    assert [record for record, _ in read] == in_process
    assert all(own_mapping for _, own_mapping in read)
    assert records._pid == os.getpid()


def test_pickle_round_trip(tmp_path):
    path = tmp_path / 'p.jsonl'
    path.write_bytes(layout(RECORDS, blanks={1: ''}))
    records = JsonlRecords(str(path), required=('img_path',))
    assert records[0]
    data = pickle.dumps(records)
    assert b'mmap' not in data
    again = pickle.loads(data)
    assert again._mm is None and again.required == ('img_path',)
    assert list(again) == list(records) and again.source(1) == f'{path}:3'
    np.testing.assert_array_equal(again.starts, records.starts)
    # A file rewritten after indexing is refused when a process maps it, not misread.
    path.write_bytes(layout(RECORDS[:2]))
    with pytest.raises(DataFileError, match='changed since it was indexed'):
        pickle.loads(data)[0]


def test_index_memory_per_record(tmp_path):
    path = tmp_path / 'mem.jsonl'
    path.write_bytes(layout(RECORDS * 250))
    records = JsonlRecords(str(path))
    assert records.starts.dtype == np.int64 and records.starts.nbytes / len(records) <= 8
    assert records.blank_after.nbytes == 0 and records.nbytes / len(records) <= 8
    path.write_bytes(layout(RECORDS * 250, blanks={k: '' for k in range(0, 2000, 2)}))
    records = JsonlRecords(str(path))
    assert len(records) == 1000 and records.nbytes / len(records) <= 16
    assert {k: v for k, v in vars(records).items() if isinstance(v, np.ndarray)}.keys() == {'starts', 'blank_after'}


def test_benchmark_smoke(capsys):
    # The real figures come from the full 1M-line run; this checks the script end to end on a few lines.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks'))
    import jsonl_index as benchmark  # benchmarks/jsonl_index.py
    summary = benchmark.main(['--lines', '3000', '--accesses', '200'])
    assert summary['lines'] == 3000 and summary['index_bytes_per_sample'] == 8.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
