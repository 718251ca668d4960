"""The multi-node launchers: launcher_intelmpi.sh (mpirun), launcher_srun.sh (srun) and start_in_container.sh.

Dry runs (MLLM_LAUNCH_DRY_RUN=1: each script prints the command it would exec) check rank detection, the
mpirun flavour's flags, the port choice and argument pass-through. Real runs train the tiny demo model on 2
CPU "nodes" through Open MPI's and MPICH's mpirun on this host, kill a rank, and submit both launchers to a
one-machine Slurm (tools/ci/start_slurm.sh). Without mpirun / Slurm they skip, except under MLLM_CI=1 (.ci/run),
where a missing tool fails.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START = os.path.join(REPO, 'start_in_container.sh')
MPI_LAUNCHER = os.path.join(REPO, 'launcher_intelmpi.sh')
SRUN_LAUNCHER = os.path.join(REPO, 'launcher_srun.sh')
VENV_BIN = os.path.dirname(sys.executable)
HOST = subprocess.run(['hostname'], capture_output=True, text=True, check=True).stdout.strip()
IS_ROOT = os.geteuid() == 0
IN_CI = bool(os.environ.get('MLLM_CI'))

# Every argument must reach finetune.py as given: spaces, quotes, '=', '$', globs, an empty one, a newline.
ODD_ARGS = ['a b', "it's", '"dq"', 'k=v', '--flag=x y', '$HOME', '${PATH}', '*', '[a-z]?', '~', '', '-', '--',
            'back\\slash', 'tab\there', 'line\nbreak', '$(echo no)', '`echo no`', ';|&<>', 'ünï']

_OURS = re.compile(r'^(SLURM_|OMPI_|PMI_|PMIX_|I_MPI_|HYDRA_|MLLM_)|'
                   r'^(NODELIST|NNODES|NODE_RANK|MASTER_ADDR|MASTER_PORT|HOSTFILE|MPIRUN|MPIRUN_ARGS|MPI_FLAVOUR|SRUN|SRUN_ARGS|NPROC_PER_NODE|GPUS_PER_NODE|'
                   r'CUDA_VISIBLE_DEVICES|ACCELERATE_CONFIG|CONTAINER_CMD)$')


def _env(extra_path=(), **values):
    """This environment without any launcher / MPI / Slurm variable, the venv first on PATH, no GPU
    (CUDA_VISIBLE_DEVICES=''; None removes a variable), then `values`."""
    env = {k: v for k, v in os.environ.items() if not _OURS.match(k)}
    env['PATH'] = os.pathsep.join([*map(str, extra_path), VENV_BIN, env.get('PATH', '/usr/bin:/bin')])
    env.update(HF_HUB_OFFLINE='1', TOKENIZERS_PARALLELISM='false', CUDA_VISIBLE_DEVICES='')
    for k, v in values.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def _argv(quoted):
    """The argv of a dry-run line (bash's printf %q quoting), read back by bash itself."""
    out = subprocess.run(['bash', '-c', 'printf "%s\\0"' + quoted], capture_output=True, check=True).stdout
    return out.decode().split('\0')[:-1]


def _run(script, *args, cwd=REPO, **env):
    return subprocess.run(['bash', script, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def _dry(script, *args, cwd=REPO, **env):
    """(argv of the command the script would exec, its stderr); the script must succeed."""
    run = _run(script, *args, cwd=cwd, MLLM_LAUNCH_DRY_RUN='1', **env)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.split('\n') if line.startswith('mllm-launch-exec:')]
    assert len(lines) == 1, run.stdout
    return _argv(run.stdout[run.stdout.index('mllm-launch-exec:') + len('mllm-launch-exec:'):]), run.stderr


def _fails(script, *args, match, **env):
    run = _run(script, *args, MLLM_LAUNCH_DRY_RUN='1', **env)
    assert run.returncode != 0 and 'mllm-launch-exec' not in run.stdout, run.stdout + run.stderr
    assert re.search(match, run.stderr), run.stderr
    return run.stderr


def _opt(argv, name):
    return argv[argv.index(name) + 1]


def _accelerate(argv):
    """Check the accelerate command's shape; return its options as a dict and the script's arguments."""
    assert argv[:2] == ['accelerate', 'launch'], argv
    names = ['--config_file', '--num_machines', '--machine_rank', '--num_processes', '--main_process_ip',
             '--main_process_port']
    assert argv[2:14:2] == names, argv
    return dict(zip(names, argv[3:14:2])), argv[14:]


def _fake_tool(folder, name, output):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text('#!/bin/sh\ncat <<\'EOF\'\n' + output + '\nEOF\n')
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- the files

SCRIPTS = sorted(os.path.join(REPO, n) for n in os.listdir(REPO) if n.endswith('.sh'))
SCRIPTS += sorted(os.path.join(REPO, 'tools', 'ci', n) for n in os.listdir(os.path.join(REPO, 'tools', 'ci'))
                  if n.endswith('.sh'))


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: os.path.relpath(p, REPO))
def test_scripts_are_executable_unix_bash(path):
    data = open(path, 'rb').read()
    assert b'\r' not in data, 'CRLF line endings: bash reads "\\r" into the last word of each line'
    assert os.access(path, os.X_OK), f'{path} lacks the executable bit (git mode 100755)'
    lines = data.decode().split('\n')
    assert lines[0] == '#!/usr/bin/env bash' and lines[1].startswith('# '), 'a shebang, then what it does'
    assert 'set -euo pipefail' in lines
    check = subprocess.run(['bash', '-n', path], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_no_cluster_specific_paths():
    for name in ('launcher_intelmpi.sh', 'launcher_srun.sh', 'start_in_container.sh'):
        text = open(os.path.join(REPO, name)).read()
        for word in ('/mnt/', 'lustre', '--partition', '#SBATCH -p', '/opt/intel', 'oneapi'):
            assert word not in text, (name, word)


# --------------------------------------------------------------------------- start_in_container.sh: ranks

def test_single_node_default():
    argv, err = _dry(START, 'mllm/pipeline/finetune.py', 'config/x.py')
    opts, rest = _accelerate(argv)
    assert opts == {'--config_file': 'accelerate_config/cpu.yaml', '--num_machines': '1', '--machine_rank': '0',
                    '--num_processes': '1', '--main_process_ip': '127.0.0.1', '--main_process_port': '29500'}
    assert rest == ['mllm/pipeline/finetune.py', 'config/x.py']
    assert 'node rank 0 of 1 (from single node)' in err


def test_openmpi_rank():
    argv, err = _dry(START, 'train.py', OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2)
    opts, rest = _accelerate(argv)
    assert (opts['--machine_rank'], opts['--num_machines'], opts['--num_processes']) == ('1', '2', '2')
    assert 'from OMPI_COMM_WORLD_RANK' in err and 'neither MASTER_ADDR nor a node list' in err
    assert rest == ['train.py']


def test_pmi_rank_of_intel_mpi_and_mpich():
    argv, err = _dry(START, 'train.py', PMI_RANK=3, PMI_SIZE=4, MASTER_ADDR='10.1.2.3', MASTER_PORT=12345)
    opts, _ = _accelerate(argv)
    assert opts == {'--config_file': 'accelerate_config/cpu.yaml', '--num_machines': '4', '--machine_rank': '3',
                    '--num_processes': '4', '--main_process_ip': '10.1.2.3', '--main_process_port': '12345'}
    assert 'from PMI_RANK' in err


def test_slurm_step_rank_and_node_list():
    slurm = dict(SLURM_JOB_ID=7, SLURM_STEP_ID=0, SLURM_PROCID=2, SLURM_NODEID=2, SLURM_NTASKS=4,
                 SLURM_STEP_NUM_TASKS=4, SLURM_STEP_NUM_NODES=4, SLURM_JOB_NODELIST='gpu[01-03],login')
    opts, _ = _accelerate(_dry(START, 'train.py', **slurm)[0])
    assert (opts['--machine_rank'], opts['--num_machines'], opts['--main_process_ip']) == ('2', '4', 'gpu01')
    _fails(START, 'train.py', match='one task per node', **dict(slurm, SLURM_STEP_NUM_NODES=2))
    _fails(START, 'train.py', match='no per-node step',
           **dict(slurm, SLURM_STEP_ID=None, SLURM_NNODES=4, SLURM_JOB_NODELIST='gpu01'))


def test_mpi_rank_wins_over_slurm():
    # Open MPI under Slurm: its ranks also see the Slurm variables of the orted step.
    opts, _ = _accelerate(_dry(START, 'x', OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2, SLURM_STEP_ID=0,
                               SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_JOB_NODELIST='a,b')[0])
    assert (opts['--machine_rank'], opts['--main_process_ip']) == ('1', 'a')


def test_hostname_index_in_the_node_list():
    argv, err = _dry(START, 'x', NODELIST=f'first,{HOST},third')
    opts, _ = _accelerate(argv)
    assert (opts['--machine_rank'], opts['--num_machines'], opts['--main_process_ip']) == ('1', '3', 'first')
    assert 'from host index in the node list' in err
    opts, _ = _accelerate(_dry(START, 'x', SLURM_JOB_NODELIST=f'{HOST},other[1-2]')[0])  # without srun
    assert (opts['--machine_rank'], opts['--num_machines']) == ('0', '3')
    _fails(START, 'x', match='is not in the node list', NODELIST='first,second')
    _fails(START, 'x', match='more than once', NODELIST=f'{HOST},{HOST}')


def test_inconsistent_counts_and_placement_fail_early():
    _fails(START, 'x', match='NNODES=3, but OMPI_COMM_WORLD_RANK says 2', OMPI_COMM_WORLD_RANK=0,
           OMPI_COMM_WORLD_SIZE=2, NNODES=3)
    _fails(START, 'x', match='node list has 3 hosts', OMPI_COMM_WORLD_RANK=0, OMPI_COMM_WORLD_SIZE=2, NODELIST='a,b,c')
    _fails(START, 'x', match='not below', NODE_RANK=2, NNODES=2)
    # MPI put rank 1 on the first listed host, where the master (rank 0) must run: a hang, caught up front
    _fails(START, 'x', match='node-list order', OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2, NODELIST=f'{HOST},b')
    opts, _ = _accelerate(_dry(START, 'x', NODE_RANK=1, NNODES=2, MASTER_ADDR='m')[0])
    assert (opts['--machine_rank'], opts['--main_process_ip']) == ('1', 'm')


@pytest.mark.parametrize(('env', 'config', 'per_node'), [
    (dict(GPUS_PER_NODE=0), 'accelerate_config/cpu.yaml', 1),
    (dict(GPUS_PER_NODE=0, NPROC_PER_NODE=3), 'accelerate_config/cpu.yaml', 3),
    (dict(GPUS_PER_NODE=8), 'accelerate_config/ddp.yaml', 8),
    (dict(GPUS_PER_NODE=8, NPROC_PER_NODE=2), 'accelerate_config/ddp.yaml', 2),
    (dict(CUDA_VISIBLE_DEVICES='0,1,2'), 'accelerate_config/ddp.yaml', 3),
    (dict(CUDA_VISIBLE_DEVICES='1,-1,2'), 'accelerate_config/ddp.yaml', 1),  # CUDA stops at -1
    (dict(CUDA_VISIBLE_DEVICES=''), 'accelerate_config/cpu.yaml', 1),
    (dict(CUDA_VISIBLE_DEVICES=None, nvidia_smi=4), 'accelerate_config/ddp.yaml', 4),
    (dict(GPUS_PER_NODE=2, ACCELERATE_CONFIG='accelerate_config/fsdp.yaml'), 'accelerate_config/fsdp.yaml', 2),
])
def test_processes_per_node(tmp_path, env, config, per_node):
    env = dict(env)
    gpus = env.pop('nvidia_smi', None)
    path = ()
    if gpus:
        lines = '\n'.join(f'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})' for i in range(gpus))
        _fake_tool(tmp_path / 'bin', 'nvidia-smi', lines)
        path = (tmp_path / 'bin',)
    opts, _ = _accelerate(_dry(START, 'x', extra_path=path, PMI_RANK=0, PMI_SIZE=2, **env)[0])
    assert (opts['--config_file'], opts['--num_processes']) == (config, str(2 * per_node))


def test_gpu_count_from_torch_when_there_is_no_nvidia_smi(tmp_path):
    import torch

    run = subprocess.run(['bash', START, 'x'], cwd=REPO, capture_output=True, text=True,
                         env=_env(MLLM_LAUNCH_DRY_RUN='1', CUDA_VISIBLE_DEVICES=None, PYTHON=sys.executable,
                                  PATH=f'{tmp_path}:{VENV_BIN}:/usr/bin:/bin'))  # no nvidia-smi here
    assert run.returncode == 0, run.stderr
    gpus = torch.cuda.device_count()
    device = f'{gpus} GPU' if gpus else '1 CPU'
    assert f': {device} process(es)' in run.stderr, run.stderr


def test_arguments_pass_through_untouched():
    argv, _ = _dry(START, *ODD_ARGS)
    assert _accelerate(argv)[1] == ODD_ARGS


def test_accelerate_as_a_module_without_the_cli_on_path(tmp_path):
    for tool in ('bash', 'hostname', 'dirname', 'awk', 'sort', 'wc', 'grep'):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    run = subprocess.run(['bash', START, 'x'], cwd=REPO, capture_output=True, text=True,
                         env=_env(MLLM_LAUNCH_DRY_RUN='1', PATH=str(tmp_path), PYTHON=sys.executable))
    assert run.returncode == 0, run.stderr
    argv = _argv(run.stdout.split('mllm-launch-exec:', 1)[1])
    assert argv[:3] == [sys.executable, '-m', 'accelerate.commands.launch']


# --------------------------------------------------------------------------- launcher_intelmpi.sh

OPEN_MPI = 'mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/'
HYDRA = 'HYDRA build details:\n    Version:                                 4.0.2'
INTEL = 'Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619 (id: c2e19c2f3e)'


def _mpi_dry(tmp_path, version, *args, **env):
    fake = _fake_tool(tmp_path / 'bin', 'mpirun', version)
    argv, err = _dry(MPI_LAUNCHER, *args, extra_path=(tmp_path / 'bin',), **env)
    assert argv[0] == 'mpirun' and shutil.which('mpirun', path=f'{tmp_path}/bin') == str(fake)
    cut = argv.index(START)
    assert argv[cut - 1] == 'bash'
    return argv[1:cut - 1], argv[cut + 1:], err


def _pairs(flags, flag):
    return [flags[i + 1] for i, f in enumerate(flags) if f == flag]


def test_open_mpi_one_rank_per_node(tmp_path):
    flags, rest, err = _mpi_dry(tmp_path, OPEN_MPI, 'mllm/pipeline/finetune.py', *ODD_ARGS, NODELIST='n1,n[2-3]')
    head = ['-np', '3', '--map-by', 'ppr:1:node', '--bind-to', 'none', *(['--allow-run-as-root'] if IS_ROOT else []),
            '--host', 'n1,n2,n3']
    assert flags[:len(head)] == head
    exported = _pairs(flags, '-x')
    assert exported[:5] == ['NNODES=3', 'NODELIST=n1,n2,n3', 'MASTER_ADDR=n1', 'MASTER_PORT=29500', f'MLLM_ROOT={REPO}']
    assert {'PATH', 'HF_HUB_OFFLINE', 'MLLM_LAUNCH_DRY_RUN'} <= set(exported[5:])
    assert flags == head + [a for x in exported for a in ('-x', x)]
    assert rest == ['mllm/pipeline/finetune.py', *ODD_ARGS]
    assert 'openmpi' in err and 'port 29500 not checked' in err  # the master n1 is another machine
    assert '--oversubscribe' not in flags


@pytest.mark.parametrize('version', [HYDRA, INTEL], ids=['mpich', 'intel'])
def test_hydra_one_rank_per_node(tmp_path, version):
    flags, rest, err = _mpi_dry(tmp_path, version, 'train.py', 'a b', NODELIST='n1,n2', MASTER_PORT=23456)
    assert flags == ['-n', '2', '-ppn', '1', '-hosts', 'n1,n2', '-genvall',
                     '-genv', 'NNODES', '2', '-genv', 'NODELIST', 'n1,n2', '-genv', 'MASTER_ADDR', 'n1',
                     '-genv', 'MASTER_PORT', '23456', '-genv', 'MLLM_ROOT', REPO]
    assert rest == ['train.py', 'a b'] and 'hydra' in err


def test_under_slurm_the_allocation_gives_the_hosts(tmp_path):
    slurm = dict(SLURM_JOB_ID=9, SLURM_JOB_NODELIST='node[08-10]', SLURM_JOB_NUM_NODES=3)
    flags, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', **slurm)
    assert '--host' not in flags and flags[:4] == ['-np', '3', '--map-by', 'ppr:1:node']
    assert 'NODELIST=node08,node09,node10' in flags and 'MASTER_ADDR=node08' in flags
    (tmp_path / 'bin' / 'mpirun').unlink()
    flags, _, _ = _mpi_dry(tmp_path, HYDRA, 'x', **slurm)
    assert flags[:5] == ['-n', '3', '-ppn', '1', '-genvall']
    _fails(MPI_LAUNCHER, 'x', match='NNODES=2, but SLURM_JOB_NODELIST lists 3', extra_path=(tmp_path / 'bin',),
           NNODES=2, **slurm)


def test_one_host_listed_twice_gets_two_ranks(tmp_path):
    flags, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', NODELIST='127.0.0.1,127.0.0.1')
    assert flags[:4] == ['-np', '2', '--map-by', 'slot'] and _opt(flags, '--host') == '127.0.0.1,127.0.0.1'
    (tmp_path / 'bin' / 'mpirun').unlink()
    flags, _, _ = _mpi_dry(tmp_path, HYDRA, 'x', NODELIST='127.0.0.1,127.0.0.1')
    assert flags[:5] == ['-n', '2', '-hosts', '127.0.0.1:2', '-genvall']


def test_hostfile_and_local_default(tmp_path):
    hostfile = tmp_path / 'hosts'
    hostfile.write_text('# nodes\nh1 slots=8\nh2\n\nh1\n')
    flags, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', HOSTFILE=hostfile)
    assert _opt(flags, '--host') == 'h1,h2' and 'NNODES=2' in flags
    (tmp_path / 'bin' / 'mpirun').unlink()
    flags, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x')
    assert _opt(flags, '--host') == HOST and 'NNODES=1' in flags and f'MASTER_ADDR={HOST}' in flags


def test_mpirun_choice_and_unknown_flavour(tmp_path):
    other = _fake_tool(tmp_path / 'elsewhere', 'my-mpiexec', HYDRA)
    argv, _ = _dry(MPI_LAUNCHER, 'x', MPIRUN=other, NODELIST='a,b')
    assert argv[0] == str(other) and argv[1:5] == ['-n', '2', '-ppn', '1']
    weird = _fake_tool(tmp_path / 'elsewhere', 'weird-mpirun', 'Some MPI 1.0')
    _fails(MPI_LAUNCHER, 'x', match='set MPI_FLAVOUR', MPIRUN=weird)
    argv, _ = _dry(MPI_LAUNCHER, 'x', MPIRUN=weird, MPI_FLAVOUR='openmpi', NODELIST='a')
    assert argv[1:5] == ['-np', '1', '--map-by', 'ppr:1:node']
    _fails(MPI_LAUNCHER, 'x', match='launcher_srun.sh', MPIRUN=str(tmp_path / 'missing'))


def test_busy_master_port_moves_to_the_next_free_one(tmp_path):
    for _ in range(20):
        busy = socket.socket()
        busy.bind(('', 0))
        busy.listen()
        port = busy.getsockname()[1]
        probe = socket.socket()
        try:
            probe.bind(('', port + 1))
            break
        except OSError:
            busy.close()
        finally:
            probe.close()
    with busy:
        first, _, err = _mpi_dry(tmp_path, OPEN_MPI, 'x', NODELIST='127.0.0.1', MASTER_PORT=port)
        again, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', NODELIST='127.0.0.1', MASTER_PORT=port)
        no_python, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', NODELIST='127.0.0.1', MASTER_PORT=port,
                                   PYTHON=tmp_path / 'no-python')  # bash's /dev/tcp sees the listener
    ports = [[x for x in _pairs(flags, '-x') if x.startswith('MASTER_PORT')] for flags in (first, again, no_python)]
    assert ports == [[f'MASTER_PORT={port + 1}']] * 3  # deterministic, with or without python; sent to every rank
    assert f'port {port} is in use on 127.0.0.1: using {port + 1}' in err
    free, _, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', NODELIST='127.0.0.1', MASTER_PORT=port)
    assert f'MASTER_PORT={port}' in free


def test_container_prefix_and_extra_mpirun_flags(tmp_path):
    flags, rest, _ = _mpi_dry(tmp_path, OPEN_MPI, 'x', 'y z', NODELIST='a,b',
                              CONTAINER_CMD='apptainer exec --nv /img/mllm.sif', MPIRUN_ARGS='--mca btl ^openib')
    assert flags[-7:] == ['--mca', 'btl', '^openib', 'apptainer', 'exec', '--nv', '/img/mllm.sif']
    assert 'CONTAINER_CMD' not in _pairs(flags, '-x') and rest == ['x', 'y z']


def test_root_is_found_from_slurms_copy_of_the_batch_script(tmp_path):
    _fake_tool(tmp_path / 'bin', 'mpirun', OPEN_MPI)
    spool = tmp_path / 'spool'
    spool.mkdir()
    shutil.copy(MPI_LAUNCHER, spool / 'slurm_script')  # what sbatch runs
    slurm = dict(SLURM_JOB_ID=3, SLURM_JOB_NODELIST='n1', extra_path=(tmp_path / 'bin',))
    argv, _ = _dry(str(spool / 'slurm_script'), 'x', cwd=tmp_path, SLURM_SUBMIT_DIR=REPO, **slurm)
    assert argv[-2:] == [START, 'x'] and f'MLLM_ROOT={REPO}' in argv
    argv, _ = _dry(str(spool / 'slurm_script'), 'x', cwd=tmp_path, MLLM_ROOT=REPO, **slurm)
    assert argv[-2:] == [START, 'x']
    run = _run(str(spool / 'slurm_script'), 'x', cwd=tmp_path, MLLM_LAUNCH_DRY_RUN='1', **slurm)
    assert run.returncode != 0 and 'set MLLM_ROOT' in run.stderr


# --------------------------------------------------------------------------- launcher_srun.sh

def test_srun_one_task_per_node():
    argv, err = _dry(SRUN_LAUNCHER, 'mllm/pipeline/finetune.py', *ODD_ARGS, SLURM_JOB_ID=5,
                     SLURM_JOB_NODELIST='g[1-2]', SLURM_CPUS_ON_NODE=16, NODELIST='ignored')
    assert argv == ['srun', '--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--cpus-per-task=16',
                    '--kill-on-bad-exit=1', '--export=ALL', 'bash', START, 'mllm/pipeline/finetune.py', *ODD_ARGS]
    assert 'NODELIST is ignored' in err and 'master g1:29500' in err
    argv, _ = _dry(SRUN_LAUNCHER, 'x', SLURM_JOB_ID=5, SLURM_JOB_NODELIST='g1', SRUN_ARGS='--mpi=none',
                   CONTAINER_CMD='enroot start img', SLURM_CPUS_PER_TASK=4)
    assert argv == ['srun', '--nodes=1', '--ntasks=1', '--ntasks-per-node=1', '--cpus-per-task=4',
                    '--kill-on-bad-exit=1', '--export=ALL', '--mpi=none', 'enroot', 'start', 'img', 'bash', START, 'x']
    _fails(SRUN_LAUNCHER, 'x', match='not inside a Slurm allocation')


def test_hostlist_expansion_matches_scontrol(tmp_path):
    patterns = {'a': ['a'], 'a,b': ['a', 'b'], 'n[01-03,7]': ['n01', 'n02', 'n03', 'n7'],
                'rack[1-2]-n[08-10],login': [f'rack{r}-n{n:02d}' for r in (1, 2) for n in (8, 9, 10)] + ['login'],
                'gpu[9-10]': ['gpu9', 'gpu10'], 'x y': ['x', 'y']}
    for pattern, hosts in patterns.items():
        argv, _ = _dry(SRUN_LAUNCHER, 'x', SLURM_JOB_ID=1, SLURM_JOB_NODELIST=pattern)
        assert argv[1] == f'--nodes={len(hosts)}'
        opts, _ = _accelerate(_dry(START, 'x', NODE_RANK=0, SLURM_JOB_NODELIST=pattern)[0])
        assert opts['--main_process_ip'] == hosts[0]
        if shutil.which('scontrol'):  # Slurm's own expansion (it only needs a config to parse)
            (tmp_path / 'slurm.conf').write_text('ClusterName=test\nSlurmctldHost=localhost\n')
            scontrol = subprocess.run(['scontrol', 'show', 'hostnames', pattern], capture_output=True, text=True,
                                      env=dict(os.environ, SLURM_CONF=str(tmp_path / 'slurm.conf')), timeout=30)
            assert scontrol.stdout.split() == hosts, scontrol.stderr


# --------------------------------------------------------------------------- real runs

def _need(tool, why):
    path = shutil.which(tool, path=os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin', '/sbin']))
    if path:
        return path
    if IN_CI:
        pytest.fail(f'{tool} is missing under MLLM_CI: .ci/run installs it ({why})')
    pytest.skip(f'{tool} is not installed ({why}); apt-get install it or run .ci/run')


def _mpirun(flavour):
    names = {'openmpi': ('mpirun.openmpi', 'mpirun'), 'hydra': ('mpirun.mpich', 'mpiexec.hydra', 'mpirun')}
    for name in names[flavour]:
        path = shutil.which(name)
        if path:
            version = subprocess.run([path, '--version'], capture_output=True, text=True).stdout
            if ('Open MPI' in version) == (flavour == 'openmpi') and ('HYDRA' in version) == (flavour == 'hydra'):
                return path
    return _need({'openmpi': 'mpirun.openmpi', 'hydra': 'mpirun.mpich'}[flavour],
                 'Debian packages openmpi-bin / mpich')


def _train_args(root, out, steps=4):
    return ['mllm/pipeline/finetune.py', 'config/demo/shapes_rec_tiny_llava.py', '--cfg-options',
            f'data_args.prepare.0.root={root}', 'data_args.prepare.0.num_train=16', 'data_args.prepare.0.num_test=4',
            f'data_args.train.filename={root}/train.jsonl', f'data_args.train.image_folder={root}/images',
            'data_args.validation=None', 'data_args.multitest=None',
            '--max_steps', str(steps), '--per_device_train_batch_size', '2', '--eval_strategy', 'no',
            '--save_strategy', 'no', '--disable_tqdm', 'True', '--output_dir', str(out)]


def _ranks(log):
    return sorted(set(re.findall(r'mllm: rank (\d+) of (\d+) \(DistributedType\.(\w+)\)', log)))


def _nodes(log):
    return sorted(re.findall(r'node rank (\d+) of (\d+) \(from (\w+)\)', log))


def _global_step(out):
    return json.load(open(os.path.join(out, 'trainer_state.json')))['global_step']


@pytest.mark.parametrize(('flavour', 'rank_var'), [('openmpi', 'OMPI_COMM_WORLD_RANK'), ('hydra', 'PMI_RANK')])
def test_real_mpirun_passes_ranks_and_arguments(flavour, rank_var):
    """MLLM_LAUNCH_DRY_RUN=node: a real mpirun starts 2 ranks on this host, each prints its accelerate command."""
    run = _run(MPI_LAUNCHER, *ODD_ARGS, MPIRUN=_mpirun(flavour), NODELIST='127.0.0.1,127.0.0.1',
               MLLM_LAUNCH_DRY_RUN='node')
    assert run.returncode == 0, run.stderr
    commands = [_accelerate(_argv(line)) for line in run.stdout.split('mllm-launch-exec:')[1:]]
    assert sorted(opts['--machine_rank'] for opts, _ in commands) == ['0', '1']
    for opts, rest in commands:
        assert (opts['--num_machines'], opts['--num_processes'], opts['--main_process_ip']) == ('2', '2', '127.0.0.1')
        assert rest == ODD_ARGS
    assert _nodes(run.stderr) == [('0', '2', rank_var), ('1', '2', rank_var)]


@pytest.mark.slow
@pytest.mark.parametrize(('flavour', 'rank_var'), [('openmpi', 'OMPI_COMM_WORLD_RANK'), ('hydra', 'PMI_RANK')])
def test_mpirun_drives_two_nodes_on_this_host(tmp_path, flavour, rank_var):
    """launcher_intelmpi.sh -> mpirun (2 ranks on this host) -> start_in_container.sh -> accelerate: one CPU
    process per "node", world size 2; the output dir has a space, quotes, '$' and '*' in its name."""
    mpirun = _mpirun(flavour)
    out = tmp_path / "out dir $HOME it's *"
    start = time.time()
    run = _run(MPI_LAUNCHER, *_train_args(tmp_path / 'data', out), MPIRUN=mpirun, NODELIST='127.0.0.1,127.0.0.1')
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert _nodes(log) == [('0', '2', rank_var), ('1', '2', rank_var)], log[-4000:]
    assert _ranks(log) == [('0', '2', 'MULTI_CPU'), ('1', '2', 'MULTI_CPU')], log[-4000:]
    assert _global_step(out) == 4 and os.path.isfile(out / 'model.safetensors')
    print(f'{flavour}: 2 nodes x 1 CPU process, 4 steps, {time.time() - start:.1f} s')


def _processes_with(text):
    """pid -> environment of the processes whose command line contains `text`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                cmdline = f.read().decode(errors='replace')
            with open(f'/proc/{pid}/environ', 'rb') as f:
                environ = f.read().decode(errors='replace').split('\0')
        except OSError:
            continue
        if text in cmdline:
            found[int(pid)] = environ
    return found


@pytest.mark.slow
def test_a_killed_rank_ends_the_whole_job(tmp_path):
    """SIGKILL the training process of node 1 (an OOM kill, say): mpirun returns non-zero within seconds, its
    output names the failed rank, and no process of the run is left behind (node 0 would otherwise wait in
    a collective until the 30-minute timeout)."""
    mpirun = _mpirun('openmpi')
    out = tmp_path / 'out'
    log_path = tmp_path / 'log'
    with open(log_path, 'w') as log:
        job = subprocess.Popen(['bash', MPI_LAUNCHER, *_train_args(tmp_path / 'data', out, steps=100000)], cwd=REPO,
                               env=_env(MPIRUN=mpirun, NODELIST='127.0.0.1,127.0.0.1'), stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(_ranks(log_path.read_text())) < 2 or "{'loss'" not in log_path.read_text():  # training runs
            assert job.poll() is None and time.time() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.2)
        workers = [pid for pid, env in _processes_with(str(out)).items()
                   if 'RANK=1' in env and any(e.startswith('LOCAL_RANK=') for e in env)]
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        killed = time.time()
        rc = job.wait(timeout=60)
        took = time.time() - killed
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    log = log_path.read_text()
    assert rc != 0 and took < 30, (rc, took, log[-4000:])
    assert re.search(r'rank\s*:\s*1 \(local_rank: 0\)', log) and 'SIGKILL' in log, log[-4000:]  # torch's agent
    assert re.search(r'Process name: \[\[\d+,\d+\],1\]', log), log[-4000:]  # mpirun: its rank 1 failed first
    for _ in range(50):
        if not _processes_with(str(out)):
            break
        time.sleep(0.1)
    assert not _processes_with(str(out)), 'processes of the killed job are still running'
    print(f'killed rank 1: mpirun returned {rc} after {took:.1f} s')


@pytest.fixture(scope='module')
def slurm():
    """SLURM_CONF of a one-machine Slurm started by tools/ci/start_slurm.sh (stopped again if started here)."""
    if not (IN_CI or os.environ.get('MLLM_TEST_SLURM')):
        pytest.skip('the Slurm runs start slurmctld + slurmd on this machine: set MLLM_TEST_SLURM=1 (root, Debian '
                    'packages slurm-wlm and munge) or run .ci/run')
    for tool in ('sbatch', 'slurmctld', 'slurmd', 'munged'):
        _need(tool, 'Debian packages slurm-wlm and munge')
    if not IS_ROOT:
        pytest.fail('tools/ci/start_slurm.sh starts munged / slurmctld / slurmd and needs root')
    state = '/tmp/mllm-slurm'
    conf = os.path.join(state, 'slurm.conf')
    up = subprocess.run(['sinfo', '-h', '-o', '%t'], capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, SLURM_CONF=conf))
    started = up.returncode != 0 or not re.match(r'(idle|mix|alloc)', up.stdout)
    start = subprocess.run(['bash', os.path.join(REPO, 'tools', 'ci', 'start_slurm.sh'), state], capture_output=True,
                           text=True, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    assert start.stdout.strip().endswith(f'export SLURM_CONF={conf}')
    yield conf
    if started:
        subprocess.run(['bash', os.path.join(REPO, 'tools', 'ci', 'stop_slurm.sh'), state], timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize(('launcher', 'rank_var'), [(MPI_LAUNCHER, 'OMPI_COMM_WORLD_RANK'),
                                                    (SRUN_LAUNCHER, 'SLURM_PROCID')], ids=['mpirun', 'srun'])
def test_sbatch_runs_the_launcher(tmp_path, slurm, launcher, rank_var):
    """sbatch --nodes 1 --wait <launcher> ...: one node, NPROC_PER_NODE=2 CPU processes, world size 2."""
    if launcher == MPI_LAUNCHER:
        _mpirun('openmpi')
    out = tmp_path / 'out'
    start = time.time()
    job = subprocess.run(['sbatch', '--parsable', '--wait', '--nodes', '1', '--cpus-per-task', '2', '--time', '5',
                          '--output', str(tmp_path / 'slurm-%j.out'), launcher, *_train_args(tmp_path / 'data', out)],
                         cwd=REPO, env=_env(SLURM_CONF=slurm, NPROC_PER_NODE=2), capture_output=True, text=True,
                         timeout=300)
    job_id = job.stdout.strip().split(';')[0]
    logs = list(tmp_path.glob('slurm-*.out'))
    log = logs[0].read_text() if logs else ''
    assert job.returncode == 0 and logs == [tmp_path / f'slurm-{job_id}.out'], job.stderr + log[-4000:]
    assert _nodes(log) == [('0', '1', rank_var)], log[-4000:]
    assert _ranks(log) == [('0', '2', 'MULTI_CPU'), ('1', '2', 'MULTI_CPU')], log[-4000:]
    assert _global_step(out) == 4
    print(f'sbatch {os.path.basename(launcher)}: job {job_id}, 1 node x 2 CPU processes, {time.time() - start:.1f} s')
