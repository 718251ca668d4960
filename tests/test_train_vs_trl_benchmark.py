"""benchmarks/train_vs_trl.py runs end to end (mllm side only, 1 warm-up + 2 measured steps) and prints the table
and a final JSON line with the keys the issue asks for."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / 'shared' / 'bench' / 'trl'


@pytest.mark.skipif(not (ANCHOR / 'bench_trl.py').is_file(), reason=f'no TRL anchor at {ANCHOR}')
def test_benchmark_smoke(tmp_path):
    out = tmp_path / 'r.json'
    proc = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'train_vs_trl.py'), '--steps', '2', '--warmup',
                           '1', '--systems', 'mllm', '--out', str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ('mllm_real_tokens_per_s', 'mllm_mfu_real', 'mllm_padding_fraction', 'mllm_cpu_share',
                'mllm_peak_rss_gib', 'mllm_supervised_tokens_per_s', 'mllm_samples_per_s'):
        assert (line[key] is not None and line[key] > 0) or key == 'mllm_padding_fraction', key
    assert '| real tokens/s' in proc.stdout and '| MFU real' in proc.stdout
    run = json.load(open(out))['runs']['mllm'][0]
    assert run['measured_steps'] == 2 and run['samples'] == 16
    # 196 image tokens per sample, the image tokens are inside the real tokens
    assert run['image_tokens'] == 16 * 196 and run['real_tokens'] > run['image_tokens']
    # the trainer's own per-run figures (engine/throughput.py) are there too
    assert {'real_tokens_per_s', 'mfu_real', 'padding_fraction'} <= set(run['trainer_logged'])
