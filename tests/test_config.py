"""Tests for config-file + command-line resolution (mllm.config.prepare_args / parse_cli)."""
import json
import textwrap
from pathlib import Path

import pytest
from mmengine.config import Config

from mllm.config import ConfigError, parse_cli, prepare_args


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def cfg_file(tmp_path, monkeypatch):
    """A config with a `_base_` file, an UPPER_CASE helper and `{{fileBasenameNoExtension}}`; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'base.py', """
        TRAIN_SET = dict(type='RECDataset', filename='a.jsonl')
        model_args = dict(model_name_or_path='tiny', freeze_backbone=False)
        data_args = dict(train=TRAIN_SET)
        training_args = dict(learning_rate=1e-3, per_device_train_batch_size=7, num_train_epochs=2)
    """)
    return write(tmp_path / 'my_exp.py', """
        _base_ = ['base.py']
        LR = 1e-3
        model_args = dict(run_name='{{fileBasenameNoExtension}}')
        training_args = dict(learning_rate=LR, report_to='none')
    """)


def test_base_inheritance_and_predefined_variable(cfg_file):
    cfg, flags = parse_cli([cfg_file])
    assert flags == {}
    assert cfg.model_args.run_name == 'my_exp'
    assert cfg.model_args.model_name_or_path == 'tiny'  # inherited from _base_
    assert cfg.data_args.train.filename == 'a.jsonl'
    assert cfg.training_args.learning_rate == 1e-3
    assert cfg.training_args.per_device_train_batch_size == 7


def test_precedence_file_lt_cfg_options_lt_typed_flag(cfg_file):
    _, _, _, targs = prepare_args([cfg_file, '--cfg-options', 'training_args.learning_rate=2e-3',
                                   '--learning_rate', '3e-3'])
    assert targs.learning_rate == pytest.approx(3e-3)
    _, _, _, targs = prepare_args([cfg_file, '--cfg-options', 'training_args.learning_rate=2e-3'])
    assert targs.learning_rate == pytest.approx(2e-3)
    _, _, _, targs = prepare_args([cfg_file])
    assert targs.learning_rate == pytest.approx(1e-3)


def test_typed_flag_before_cfg_options_still_wins(cfg_file):
    _, _, _, targs = prepare_args([cfg_file, '--learning_rate', '3e-3',
                                   '--cfg-options', 'training_args.learning_rate=2e-3'])
    assert targs.learning_rate == pytest.approx(3e-3)


def test_untyped_training_flag_never_overrides_file(cfg_file):
    cfg, flags = parse_cli([cfg_file, '--learning_rate', '5e-4'])
    assert flags == {'learning_rate': 5e-4}  # only what was typed, no parser defaults
    _, _, _, targs = prepare_args([cfg_file, '--learning_rate', '5e-4'])
    assert targs.per_device_train_batch_size == 7
    assert targs.num_train_epochs == 2


def test_typed_int_and_bool_flags(cfg_file):
    _, _, _, targs = prepare_args([cfg_file, '--per_device_train_batch_size', '3', '--remove_unused_columns',
                                   'false'])
    assert targs.per_device_train_batch_size == 3
    assert targs.remove_unused_columns is False


def test_unknown_flag_suggests_close_name(cfg_file):
    with pytest.raises(ConfigError, match='learning_rate') as info:
        prepare_args([cfg_file, '--learnig_rate', '1'])
    assert '--learnig_rate' in str(info.value)


def test_unknown_top_level_key_suggests_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'typo.py', """
        modle_args = dict()
        training_args = dict()
    """)
    with pytest.raises(ConfigError) as info:
        parse_cli([path])
    message = str(info.value)
    assert "'modle_args'" in message
    assert "Did you mean 'model_args'?" in message
    assert 'typo.py' in message


def test_upper_case_and_underscore_helpers_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'helpers.py', """
        DEFAULT_TRAIN_DATASET = dict(type='RECDataset')
        LR2 = 4e-4
        _private = 3
        data_args = dict(train=DEFAULT_TRAIN_DATASET)
        training_args = dict(learning_rate=LR2)
    """)
    cfg, _, data_args, targs = prepare_args([path])
    assert data_args.train.type == 'RECDataset'
    assert targs.learning_rate == pytest.approx(4e-4)


def test_lower_case_helper_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'lower.py', """
        lr = 1e-3
        training_args = dict(learning_rate=lr)
    """)
    with pytest.raises(ConfigError, match="'lr'"):
        parse_cli([path])


def test_unknown_training_key_in_file_suggests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'badtrain.py', """
        training_args = dict(per_device_train_batchsize=4)
    """)
    with pytest.raises(ConfigError) as info:
        prepare_args([path])
    message = str(info.value)
    assert 'per_device_train_batchsize' in message
    assert "Did you mean 'per_device_train_batch_size'?" in message
    assert 'badtrain.py' in message


def test_unknown_training_key_via_cfg_options_suggests(cfg_file):
    with pytest.raises(ConfigError, match="Did you mean 'learning_rate'"):
        prepare_args([cfg_file, '--cfg-options', 'training_args.learnig_rate=2e-3'])


def test_cfg_options_unknown_section_raises(cfg_file):
    with pytest.raises(ConfigError) as info:
        parse_cli([cfg_file, '--cfg-options', 'modle_args.freeze_backbone=True'])
    assert 'modle_args.freeze_backbone' in str(info.value)
    assert "'model_args'" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        parse_cli([str(tmp_path / 'nope.py')])


def test_nested_cfg_options_lists_and_bools(cfg_file):
    cfg, _ = parse_cli([cfg_file, '--cfg-options', 'data_args.a.b=[1,2]', 'model_args.freeze_backbone=True',
                        'data_args.train.filename=b.jsonl'])
    assert cfg.data_args.a.b == [1, 2]
    assert cfg.model_args.freeze_backbone is True
    assert cfg.data_args.train.filename == 'b.jsonl'
    assert cfg.data_args.train.type == 'RECDataset'  # siblings of an overridden key survive


def test_output_dir_default_and_resolved_dump(cfg_file, tmp_path):
    cfg, model_args, data_args, targs = prepare_args(
        [cfg_file, '--cfg-options', 'data_args.a.b=[1,2]', '--learning_rate', '3e-3'])
    out = tmp_path / 'exp' / 'my_exp'
    assert targs.output_dir.replace('\\', '/').endswith('exp/my_exp')
    assert (out / 'cfg.py').is_file() and (out / 'cfg.json').is_file()
    resolved = json.loads((out / 'cfg.json').read_text())
    assert set(resolved) == {'model_args', 'data_args', 'training_args'}
    assert resolved['training_args']['learning_rate'] == pytest.approx(3e-3)
    assert resolved['training_args']['per_device_train_batch_size'] == 7
    assert resolved['data_args']['a']['b'] == [1, 2]
    assert resolved['model_args']['run_name'] == 'my_exp'
    reloaded = Config.fromfile(str(out / 'cfg.py'))
    assert reloaded.training_args.learning_rate == pytest.approx(3e-3)
    assert reloaded.training_args.output_dir == targs.output_dir
    assert reloaded.data_args.a.b == [1, 2]
    assert reloaded.data_args.train.type == 'RECDataset'
    assert model_args.run_name == 'my_exp'
    assert data_args.a.b == [1, 2]


def test_explicit_output_dir_flag(cfg_file, tmp_path):
    _, _, _, targs = prepare_args([cfg_file, '--output_dir', str(tmp_path / 'elsewhere')])
    assert targs.output_dir == str(tmp_path / 'elsewhere')
    assert (tmp_path / 'elsewhere' / 'cfg.json').is_file()
    assert not (tmp_path / 'exp').exists()


def test_missing_sections_become_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'only_train.py', """
        training_args = dict(learning_rate=1e-4)
    """)
    cfg, model_args, data_args, targs = prepare_args([path])
    assert dict(model_args) == {} and dict(data_args) == {}
    assert targs.output_dir.replace('\\', '/').endswith('exp/only_train')


def test_truncated_flag_is_rejected(cfg_file):
    with pytest.raises(ConfigError, match='learning_rate'):
        parse_cli([cfg_file, '--learning_rat', '3'])


def test_ambiguous_prefix_flag_raises_config_error(cfg_file, capsys):
    with pytest.raises(ConfigError, match='warmup'):
        parse_cli([cfg_file, '--warmup', '100'])


# -- --cfg-options on helper variables (resolved when the file was read: overriding them does nothing) --
def test_cfg_options_on_a_helper_dict_names_the_section_key_to_set(cfg_file):
    # TRAIN_SET was copied into data_args.train when the file was read; the old code merged the
    # option into TRAIN_SET and trained on a.jsonl anyway
    with pytest.raises(ConfigError) as info:
        parse_cli([cfg_file, '--cfg-options', 'TRAIN_SET.filename=b.jsonl'])
    message = str(info.value)
    assert message.startswith("--cfg-options TRAIN_SET.filename: 'TRAIN_SET' is a helper variable")
    assert 'has no effect' in message and 'already copied into the sections' in message
    assert message.endswith('Set data_args.train.filename instead.')


def test_cfg_options_on_a_helper_value_finds_where_it_was_used(cfg_file):
    with pytest.raises(ConfigError, match=r'Set training_args\.learning_rate instead\.$'):
        parse_cli([cfg_file, '--cfg-options', 'LR=2e-3'])


def test_cfg_options_on_an_unused_helper_gives_a_generic_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / 'unused.py', """
        _SPARE = dict(filename='x.jsonl')
        training_args = dict(learning_rate=1e-3)
    """)
    with pytest.raises(ConfigError) as info:
        parse_cli([path, '--cfg-options', '_SPARE.filename=y.jsonl'])
    assert 'has no effect' in str(info.value)
    assert 'Set the model_args / data_args / training_args key that uses it instead' in str(info.value)


def test_cfg_options_on_a_name_the_file_does_not_have(cfg_file):
    with pytest.raises(ConfigError, match="'NOPE' is not a key of the config file"):
        parse_cli([cfg_file, '--cfg-options', 'NOPE.x=1'])


def test_cfg_options_on_the_demo_helpers_point_at_every_copy():
    demo = str(Path(__file__).resolve().parents[1] / 'config' / 'demo' / 'shapes_rec_tiny_llava.py')
    with pytest.raises(ConfigError, match=r'Set data_args\.train\.filename instead\.$'):
        parse_cli([demo, '--cfg-options', 'SHAPES_REC.train.filename=/data/train.jsonl'])
    # SHAPES_REC.test feeds both the validation set and the multitest entry
    with pytest.raises(ConfigError, match=r'Set data_args\.validation\.image_folder, '
                                          r'data_args\.multitest\.shapes_test\.cfg\.image_folder instead\.$'):
        parse_cli([demo, '--cfg-options', 'SHAPES_REC.test.image_folder=/data/images'])
    # a helper copied into a list: the option path uses the list index
    with pytest.raises(ConfigError, match=r'Set data_args\.prepare\.0\.root instead\.$'):
        parse_cli([demo, '--cfg-options', 'SHAPES_PREPARE.root=/data/shapes'])
