"""benchmarks/predict_speed.py runs end to end on a few samples: the rows agree line for line and the summary
names each row's samples/s (the real measurement is the benchmark's full run, not this test)."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import predict_speed  # noqa: E402

pytestmark = pytest.mark.slow


def test_smoke_rows_agree_and_report(tmp_path, capsys):
    summary = predict_speed.main(['--samples', '6', '--rows', '1x1,4x1', '--out', str(tmp_path)])
    assert summary['identical_predictions'] and summary['samples'] == 6
    assert summary['b1_p1_samples_per_s'] > 0 and summary['b4_p1_samples_per_s'] > 0
    printed = capsys.readouterr().out
    assert '"b4_p1_samples_per_s"' in printed.strip().splitlines()[-1]


def test_a_row_that_disagrees_fails(tmp_path, monkeypatch):
    real = predict_speed.run_row

    def shuffled(*args, **kwargs):
        row = real(*args, **kwargs)
        if row['batch'] == 4:
            row['predictions'] = row['predictions'][::-1]
        return row
    monkeypatch.setattr(predict_speed, 'run_row', shuffled)
    with pytest.raises(SystemExit, match='predictions differ'):
        predict_speed.main(['--samples', '6', '--rows', '1x1,4x1', '--out', str(tmp_path)])
