"""benchmarks/lcl_reproduction.py end to end at smoke scale: one row trains for 2 steps through finetune.py on the
synthetic ISEKAI data and the benchmark writes the table in the paper's layout, the results JSON and the curve
from what finetune.py wrote (numbers read back from the per-set results files)."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))

import lcl_reproduction  # noqa: E402

pytestmark = pytest.mark.slow


def test_one_row_at_smoke_scale_writes_table_results_and_curve(tmp_path):
    summary = lcl_reproduction.main(['--out', str(tmp_path), '--runs', 'vanilla', '--',
                                     '--max_steps', '2', '--eval_steps', '1', '--logging_steps', '1'])
    row = summary['vanilla']
    for k in (2, 4, 8):
        results = json.loads((tmp_path / 'vanilla' / f'multitest_unseen_{k}shot_results.json').read_text())
        assert row[f'{k}shot'] == results[f'multitest_unseen_{k}shot_accuracy_{k}shot']
        assert row[f'{k}shot_total'] == 128  # 16 unseen pairs x 2 labels x 4 queries
    assert row['steps'] == 2 and row['chance_level'] == 0.5 and row['within_time_limit']
    assert [step for _, step, _ in row['curve']] == [1, 2]  # validation at every step: two curve points
    table = (tmp_path / 'table.md').read_text().splitlines()
    assert table[0] == '| Method | 2-shot | 4-shot | 8-shot | train time |'
    assert table[2].startswith(f"| Vanilla tiny LLaVA (single images) | {row['2shot']:.2f} | {row['4shot']:.2f} | ")
    assert table[3].startswith('| chance (one of the two support names at random) | 0.50 | 0.50 | 0.50 |')
    assert table[7] == ('| Method | support letters only | exactly a support name | first letter positive | '
                        'first letter negative |')
    assert table[9].startswith('| Vanilla tiny LLaVA (single images) | ')
    # the curve as text: one point per evaluation, accuracy with its minutes and step, as in trainer_state.json
    assert table[13] == '| Method | accuracy (minutes, step) at each evaluation |'
    (t1, _, a1), (t2, _, a2) = row['curve']
    assert table[15] == (f'| Vanilla tiny LLaVA (single images) | {a1:.2f} ({t1 / 60:.1f}, 1), '
                         f'{a2:.2f} ({t2 / 60:.1f}, 2) |')
    assert (tmp_path / 'curve.png').stat().st_size > 1000
    # the nearest-support-image reference, on the vanilla run's frozen tower (the LCL row's architecture): the unseen
    # pairs mostly differ in colour, which the features keep, so it is far above the 0.5 of a random pick
    # (0.88 measured); a query matched against the wrong images, or images out of order, would give about 0.5
    features = lcl_reproduction.feature_match(tmp_path / 'vanilla', shots=(2,))
    assert set(features) == {'2shot'} and 0.75 <= features['2shot'] <= 1.0
    assert json.loads((tmp_path / 'results.json').read_text())['vanilla']['steps'] == 2


def test_unknown_run_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lcl_reproduction.main(['--out', str(tmp_path), '--runs', 'vanila'])
    assert "unknown run(s) ['vanila']" in capsys.readouterr().err


def test_copy_diagnostics_count_by_hand():
    rows = [{'answer': 'fab', 'positive': 'fabu', 'negatives': ['gous']},   # support letters, positive's first
            {'answer': 'gbf', 'positive': 'fabu', 'negatives': ['gous']},   # support letters, negative's first
            {'answer': 'xyz', 'positive': 'fabu', 'negatives': ['gous']},   # neither
            {'answer': '', 'positive': 'fabu', 'negatives': ['gous']},      # nothing
            {'answer': 'gous', 'positive': 'fabu', 'negatives': ['gous']}]  # the negative, copied whole
    assert lcl_reproduction.copy_diagnostics(rows) == {
        'support_letters_only': 0.6, 'either_name': 0.2, 'first_letter_positive': 0.2, 'first_letter_negative': 0.4}
