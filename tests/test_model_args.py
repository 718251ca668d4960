"""model_args checking (mllm.models.builder.check_model_args): unknown keys, tiny sizes, conv_args,
box formatter, dtype, and where model_name_or_path points (local directory, hub id offline / online).

Nothing here reaches the network: HF_HUB_OFFLINE=1 (conftest), and the online-mode cases replace
`hf_hub_download` by a stub that raises what huggingface_hub raises.
"""
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
from mmengine.config import Config, ConfigDict

from mllm.config import ConfigError
from mllm.models import checkpoint_location
from mllm.models.builder import FAMILIES, SHARED_KEYS, FamilyEntry, build_model, check_model_args, conv_args_keys
from mllm.models.llava import builder as llava_builder

REPO = Path(__file__).resolve().parents[1]


def _raises(args: dict, *fragments):
    """check_model_args(args) raises a ConfigError whose message holds every fragment."""
    with pytest.raises(ConfigError) as info:
        check_model_args(ConfigDict(args))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return str(info.value)


# -- keys ------------------------------------------------------------------------------------------
def test_unknown_key_is_an_error_with_the_closest_name():
    # the old builder read model_args.get('freeze_vision_tower', True) and never saw the typo
    with pytest.raises(ConfigError, match=r"'freeze_vison_tower'\. Did you mean 'freeze_vision_tower'\?"):
        build_model(ConfigDict(model_name_or_path='tiny', freeze_vison_tower=False))


def test_unknown_key_without_a_close_name_lists_the_valid_ones():
    message = _raises(dict(model_name_or_path='tiny', zzz=1), "'zzz'", 'Valid keys:', 'freeze_backbone')
    assert 'Did you mean' not in message


FAMILY_SOURCES = {'llava': 'models/llava', 'openflamingo': 'models/flamingo', 'otter': 'models/flamingo'}


def _keys_read_in_source(family_dir: str) -> set[str]:
    """Keys read by the family's own package plus the shared code outside every family package."""
    pattern = re.compile(r"model_args(?:\.get\(|\[)\s*'(\w+)'")
    found = set()
    families = {REPO / 'mllm' / d for d in FAMILY_SOURCES.values()}
    for path in (REPO / 'mllm').rglob('*.py'):
        inside = next((d for d in families if d in path.parents), None)
        if inside is None or inside == REPO / 'mllm' / family_dir:
            found |= set(pattern.findall(path.read_text(encoding='utf-8')))
    return found


@pytest.mark.parametrize('family', sorted(FAMILY_SOURCES))
def test_valid_keys_are_exactly_the_keys_the_code_reads(family):
    # A key read somewhere but missing from the set would be refused; a key in the set that nothing
    # reads would be accepted and ignored. Both directions are guarded.
    valid = FAMILIES[family].keys | SHARED_KEYS
    assert _keys_read_in_source(FAMILY_SOURCES[family]) == valid


@pytest.mark.parametrize('config', ['config/_base_/model/llava_tiny.py', 'config/_base_/model/llava_v1_7b.py',
                                    'config/demo/shapes_rec_tiny_llava.py',
                                    'config/shikra_mixture_llava_v1_7b.py', 'config/_base_/model/otter_tiny.py',
                                    'config/_base_/model/openflamingo_tiny.py', 'config/demo/shapes_rec_tiny_otter.py',
                                    'config/_base_/model/openflamingo_9b.py', 'config/_base_/model/otter_9b.py',
                                    'config/otter_mimicit_9b.py', 'config/openflamingo_9b_vqav2_eval.py',
                                    'config/openflamingo_9b_mimicit.py', 'config/otter_9b_vqav2_eval.py',
                                    'config/_base_/model/lcl_7b.py', 'config/_base_/model/lcl_tiny.py',
                                    'config/lcl_2way_random_7b.py', 'config/lcl_mix_7b.py', 'config/lcl_eval_7b.py',
                                    'config/lcl_2way_7b.py', 'config/lcl_2way_weight_7b.py',
                                    'config/openflamingo_9b_isekai_eval.py', 'config/otter_9b_isekai_eval.py',
                                    'config/lcl_cpu/lcl_synth_2way_random.py', 'config/lcl_cpu/vanilla_synth.py',
                                    'config/lcl_cpu/openflamingo_synth.py',
                                    'config/lcl_cpu/lm_warmup.py', 'config/lcl_cpu/lcl_synth_2way_random_warm.py',
                                    'config/lcl_tiny/lcl_2way_tiny.py', 'config/lcl_tiny/lcl_2way_random_tiny.py',
                                    'config/lcl_tiny/lcl_2way_weight_tiny.py', 'config/lcl_tiny/lcl_mix_tiny.py',
                                    'config/lcl_tiny/lcl_eval_tiny.py',
                                    'config/lcl_tiny/openflamingo_isekai_eval_tiny.py',
                                    'config/lcl_tiny/otter_isekai_eval_tiny.py'])
def test_shipped_configs_pass(config):
    model_args = Config.fromfile(str(REPO / config)).model_args
    model_args.model_name_or_path = 'tiny'  # the 7B files hold a placeholder path
    check_model_args(model_args)


def test_placeholder_checkpoint_path_of_the_7b_config_names_the_key():
    model_args = Config.fromfile(str(REPO / 'config/_base_/model/llava_v1_7b.py')).model_args
    _raises(model_args.to_dict(), 'model_args.model_name_or_path: no such directory: /path/to/llava-1.5-7b-hf')


def test_check_builds_no_model(monkeypatch):
    def boom(model_args):
        raise AssertionError('check_model_args built a model')

    family = FAMILIES['llava']
    monkeypatch.setitem(FAMILIES, 'llava', FamilyEntry(boom, family.keys, family.check))
    check_model_args(ConfigDict(model_name_or_path='tiny', tiny=dict(text=dict(num_hidden_layers=1))))
    with pytest.raises(AssertionError):
        build_model(ConfigDict(model_name_or_path='tiny'))


# -- values: one case per bad input, each naming its key and the closest valid name ---------------
BAD = {
    'unknown family': (dict(type='lava'), "model_args.type: 'lava'", "Did you mean 'llava'?"),
    'missing checkpoint': (dict(model_name_or_path=None), 'model_args.model_name_or_path is required'),
    'tiny key': (dict(tiny=dict(imag_size=64)), "model_args.tiny: unknown key 'imag_size'",
                 "Did you mean 'image_size'?"),
    'tiny.vision key': (dict(tiny=dict(vision=dict(hiden_size=64))), "model_args.tiny.vision: unknown key 'hiden_size'",
                        'CLIPVisionConfig', "Did you mean 'hidden_size'?"),
    'tiny.text key': (dict(tiny=dict(text=dict(num_hiden_layers=1))),
                      "model_args.tiny.text: unknown key 'num_hiden_layers'", 'LlamaConfig',
                      "Did you mean 'num_hidden_layers'?"),
    'tiny.vision set by builder': (dict(tiny=dict(vision=dict(image_size=32))), 'model_args.tiny.vision.image_size',
                                   'model_args.tiny.image_size'),
    'tiny.text set by builder': (dict(tiny=dict(text=dict(vocab_size=10))), 'model_args.tiny.text.vocab_size',
                                 'tokenizer'),
    'tiny.text not a dict': (dict(tiny=dict(text=128)), 'model_args.tiny.text: expected a dict'),
    'conv_args key': (dict(conv_args=dict(max_lenght=64)), "model_args.conv_args: unknown key 'max_lenght'",
                      "Did you mean 'max_length'?"),
    'conv_args set by builder': (dict(conv_args=dict(mode='eval')), 'model_args.conv_args.mode', 'data builder'),
    'conv_args from data_args': (dict(conv_args=dict(on_bad_sample='skip')), 'model_args.conv_args.on_bad_sample',
                                 'set it in data_args.on_bad_sample instead'),
    'conv_template': (dict(conv_args=dict(conv_template='vicuna_v11')), 'model_args.conv_args.conv_template',
                      "Did you mean 'vicuna_v1.1'?"),
    'conv_overrides key': (dict(conv_args=dict(conv_overrides=dict(sytem=''))),
                           "model_args.conv_args.conv_overrides: unknown key 'sytem'", "Did you mean 'system'?"),
    'transform type': (dict(conv_args=dict(transform=dict(type='Expand2sqare'))),
                       'model_args.conv_args.transform.type', "Did you mean 'Expand2square'?"),
    'box formatter type': (dict(target_processor=dict(boxes=dict(type='PlainBoxFormater'))),
                           "model_args.target_processor.boxes.type: 'PlainBoxFormater'",
                           "Did you mean 'PlainBoxFormatter'?"),
    'box formatter argument': (dict(target_processor=dict(boxes=dict(type='PlainBoxFormatter', precison=2))),
                               "model_args.target_processor.boxes: PlainBoxFormatter has no argument 'precison'",
                               "Did you mean 'precision'?"),
    'target_processor key': (dict(target_processor=dict(box=dict(type='PlainBoxFormatter'))),
                             "model_args.target_processor: unknown key 'box'", "Did you mean 'boxes'?"),
    'torch_dtype': (dict(torch_dtype='bfloat'), "model_args.torch_dtype: 'bfloat'", "Did you mean 'bfloat16'?"),
}


@pytest.mark.parametrize('name', list(BAD))
def test_bad_value_names_the_key(name):
    override, *fragments = BAD[name]
    _raises(dict(dict(model_name_or_path='tiny'), **override), *fragments)


def test_conv_args_keys_follow_the_dataset_constructor():
    keys = conv_args_keys()
    assert {'conv_template', 'conv_overrides', 'transform', 'max_length', 'box_tolerance'} <= set(keys)
    assert not {'self', 'dataset', 'preprocessor', 'mode', 'name', 'on_bad_sample'} & set(keys)


def test_valid_config_fields_reach_the_tiny_model():
    # the field sets come from the transformers config classes: fields beyond TINY_DEFAULTS are accepted and used
    model, _ = build_model(ConfigDict(model_name_or_path='tiny', tiny=dict(text=dict(rms_norm_eps=1e-5),
                                                                           vision=dict(layer_norm_eps=1e-6))))
    assert model.config.text_config.rms_norm_eps == 1e-5
    assert model.config.vision_config.layer_norm_eps == 1e-6


def test_flamingo_tiny_text_and_vision_fields_reach_the_model_and_typos_are_named():
    model, family = build_model(ConfigDict(type='openflamingo', model_name_or_path='tiny', tiny=dict(
        text=dict(num_hidden_layers=3, max_position_embeddings=1024), vision=dict(image_size=64, patch_size=16))))
    assert model.config.text_config.num_hidden_layers == 3 and model.config.text_config.max_position_embeddings == 1024
    assert model.config.vision_config.image_size == 64 and family.image_processor.crop_size['height'] == 64
    assert model.config.text_config.vocab_size == len(family.tokenizer)  # the vocabulary stays the tokenizer's
    _raises(dict(type='otter', model_name_or_path='tiny', tiny=dict(text=dict(num_hiden_layers=3))),
            "model_args.tiny.text: unknown key 'num_hiden_layers' (LlamaConfig has no such field)", 'num_hidden_layers')
    _raises(dict(type='otter', model_name_or_path='tiny', tiny=dict(text_model_type='mpt', text=dict(n_layer=3))),
            "model_args.tiny.text: unknown key 'n_layer' (MptConfig")
    _raises(dict(type='otter', model_name_or_path='tiny', tiny=dict(text=dict(vocab_size=10))),
            'model_args.tiny.text.vocab_size is set by the builder from the tokenizer')
    _raises(dict(type='otter', model_name_or_path='tiny', tiny=dict(vision=[64])),
            'model_args.tiny.vision: expected a dict of CLIPVisionConfig fields')


def test_box_formatter_base_class_arguments_are_accepted():
    check_model_args(ConfigDict(model_name_or_path='tiny', target_processor=dict(
        boxes=dict(type='PlainBoxFormatter', precision=2, boxes_placeholder='<boxes>'))))


# -- model_name_or_path: local directories ---------------------------------------------------------
def test_typo_in_a_local_path_suggests_the_sibling(tmp_path):
    (tmp_path / 'llava-7b').mkdir()
    typo = str(tmp_path / 'lava-7b')
    # the old builder handed this to the hub client: "Repo id must be in the form 'repo_name' ..."
    with pytest.raises(ConfigError) as info:
        build_model(ConfigDict(model_name_or_path=typo))
    assert str(info.value) == (f"model_args.model_name_or_path: no such directory: {typo}. "
                               f"Did you mean '{tmp_path / 'llava-7b'}'?")


def test_missing_parent_names_the_first_missing_folder(tmp_path):
    path = tmp_path / 'data' / 'ckpt' / 'lava-7b'
    _raises(dict(model_name_or_path=str(path)), f'no such directory: {path}',
            f"({tmp_path / 'data'} does not exist either)")


@pytest.mark.parametrize('value', ['./ckpt', '../ckpt', 'runs/exp1/checkpoint-100', '~/no-such-mllm-ckpt'])
def test_relative_and_deep_paths_are_directories_not_hub_ids(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setattr(checkpoint_location, 'hf_hub_download', mock.Mock(side_effect=AssertionError('asked the hub')))
    _raises(dict(model_name_or_path=value), f'model_args.model_name_or_path: no such directory: {value}')


def test_directory_without_config_json(tmp_path):
    _raises(dict(model_name_or_path=str(tmp_path)), 'model_args.model_name_or_path', 'has no config.json')


def test_file_instead_of_directory(tmp_path):
    (tmp_path / 'model.safetensors').write_bytes(b'')
    _raises(dict(model_name_or_path=str(tmp_path / 'model.safetensors')), 'model_args.model_name_or_path',
            'is a file')


def test_vision_tower_and_tokenizer_paths_are_checked_too(tmp_path):
    _raises(dict(model_name_or_path='tiny', vision_tower=str(tmp_path / 'clip')),
            f"model_args.vision_tower: no such directory: {tmp_path / 'clip'}")
    _raises(dict(model_name_or_path='tiny', tokenizer_name_or_path=str(tmp_path / 'tok')),
            f"model_args.tokenizer_name_or_path: no such directory: {tmp_path / 'tok'}")


def test_relative_directory_with_one_slash_is_used_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'ckpt' / 'llava').mkdir(parents=True)
    (tmp_path / 'ckpt' / 'llava' / 'config.json').write_text(json.dumps({'model_type': 'llava'}))
    assert checkpoint_location.locate_checkpoint('ckpt/llava', 'model_name_or_path') == os.path.join('ckpt/llava',
                                                                                               'config.json')


# -- model_name_or_path: hub ids --------------------------------------------------------------------
def test_invalid_hub_id_names_the_key():
    _raises(dict(model_name_or_path='my model'), "model_args.model_name_or_path: 'my model' is neither a local "
                                                 "directory nor a hub id")


def test_hub_id_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    # the old builder ended in transformers' OSError about the offline cache
    with pytest.raises(ConfigError) as info:
        build_model(ConfigDict(model_name_or_path='llava-hf/llava-1.5-7b-hf'))
    message = str(info.value)
    assert message.startswith("model_args.model_name_or_path: 'llava-hf/llava-1.5-7b-hf' is not a local directory")
    assert 'offline (HF_HUB_OFFLINE=1)' in message and 'no cached copy' in message


def _write_hub_cache(cache: Path, repo_id: str, config: dict) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = 'a' * 40
    repo = cache / ('models--' + repo_id.replace('/', '--'))
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    snapshot = repo / 'snapshots' / commit
    snapshot.mkdir(parents=True)
    (snapshot / 'config.json').write_text(json.dumps(config))
    return snapshot


def test_hub_id_offline_with_cache_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    snapshot = _write_hub_cache(tmp_path / 'hub', 'org/tiny-llava', {'model_type': 'mllm_llava'})
    check_model_args(ConfigDict(model_name_or_path='org/tiny-llava'))
    found = checkpoint_location.locate_checkpoint('org/tiny-llava', 'model_name_or_path')
    assert os.path.realpath(found) == os.path.realpath(snapshot / 'config.json')
    assert llava_builder._model_type('org/tiny-llava') == 'mllm_llava'


@pytest.mark.parametrize('error, fragments', [
    (LocalEntryNotFoundError('An error happened while trying to locate the file on the Hub'),
     ['could not reach the Hugging Face hub', 'no cached copy']),
    (OSError('Tunnel connection failed: 407 Proxy Authentication Required'),
     ['could not fetch', 'OSError', '407']),
    (RepositoryNotFoundError('404 Client Error', response=mock.MagicMock()),
     ['is neither a local directory nor a model on the Hugging Face hub']),
    (GatedRepoError('403 Client Error', response=mock.MagicMock()), ['is gated']),
])
def test_hub_failures_online_name_the_key(error, fragments, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    download = mock.Mock(side_effect=error)
    monkeypatch.setattr(checkpoint_location, 'hf_hub_download', download)
    message = _raises(dict(model_name_or_path='org/some-llava'), "model_args.model_name_or_path", "'org/some-llava'",
                      *fragments)
    assert 'offline' not in message
    download.assert_called_once_with('org/some-llava', 'config.json')

