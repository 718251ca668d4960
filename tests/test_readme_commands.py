"""The converter commands in README's data-preparation section run (--help) and use flags they accept."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
COMMANDS = re.findall(r'python (tools/[\w/]+\.py)([^`\n]*)', README)


def test_readme_has_a_command_per_converter():
    scripts = {script for script, _ in COMMANDS}
    converters = {f'tools/prepare_data/{name}' for name in os.listdir(os.path.join(REPO, 'tools', 'prepare_data'))
                  if name.endswith('.py') and name not in ('__init__.py', 'common.py')}
    assert converters <= scripts


@pytest.mark.parametrize('script', sorted({s for s, _ in COMMANDS}))
def test_readme_flags_are_accepted(script):
    out = subprocess.run([sys.executable, script, '--help'], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for _, args in (c for c in COMMANDS if c[0] == script):
        for flag in re.findall(r'(--[\w-]+)', args):
            assert flag in out.stdout, f"README uses {flag} for {script}, which --help does not list"
