"""Memory savers (issue 10): LoRA on the LLaVA family's language model (tiny, from parts, LLaVA-format checkpoints),
merging adapters into a plain checkpoint for both families (`merge_lora`, tools/merge_lora.py), and the checks of
8-bit / 4-bit loading and QLoRA that run without a GPU (the quantized path itself needs bitsandbytes on CUDA)."""
import json

import pytest
import torch
from mmengine.config import ConfigDict
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mllm.config import ConfigError
from mllm.models import build_model
from mllm.models.builder import check_model_args
from mllm.models.llava.modeling_llava import MllmLlavaForConditionalGeneration
from mllm.models.lora import merge_lora
from tools.merge_lora import MergeError, main, merge

pytest.importorskip('peft')
LORA = dict(r=4, alpha=8)


def _save(model, family, path) -> str:
    model.save_pretrained(path)
    family.tokenizer.save_pretrained(path)
    family.save_pretrained(str(path))
    return str(path)


def _words(tokenizer, n=5) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in range(3, len(tokenizer)) if i not in special][:n]


def _inputs(family_name, family):
    """A batch of one image and a few words, in the family's own format, with labels on the words."""
    torch.manual_seed(0)
    size = family.image_processor.crop_size['height']
    words = _words(family.tokenizer)
    if family_name == 'llava':
        image = family.tokenizer.convert_tokens_to_ids(family.image_token)
        ids = torch.tensor([[1, *[image] * family.num_image_tokens, *words]])
        pixel_values = torch.randn(1, 3, size, size)
    else:
        ids = torch.tensor([[1, family.tokenizer.convert_tokens_to_ids('<image>'), *words]])
        pixel_values = torch.randn(1, 1, 1, 3, size, size)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixel_values)


def _train(model, inputs, steps=3):
    words = inputs['input_ids'][0, -5:]
    labels = torch.where(torch.isin(inputs['input_ids'], words), inputs['input_ids'], -100)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
    model.eval()


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def _lora_names(model) -> set[str]:
    return {n for n, _ in model.named_parameters() if '.lora_' in n}


def test_llava_lora_trains_the_adapters_and_the_projector_only_and_reloads_with_its_adapters(tmp_path):
    plain, _ = build_model(ConfigDict(type='llava', model_name_or_path='tiny'))
    model, family = build_model(ConfigDict(type='llava', model_name_or_path='tiny', lora=LORA))
    lora = _lora_names(model)
    assert lora and all(n.startswith('model.language_model.layers.') for n in lora)  # not in the CLIP tower
    assert {n.split('.lora_')[0].rsplit('.', 1)[-1] for n in lora} == {'q_proj', 'v_proj'}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    projector = {n for n, _ in model.named_parameters() if n.startswith('model.multi_modal_projector.')}
    assert trainable == lora | projector  # LM, embeddings, lm_head and vision tower frozen
    assert model.config.lora == {'r': 4, 'alpha': 8, 'dropout': 0.0, 'target_modules': ['q_proj', 'v_proj']}
    inputs = _inputs('llava', family)
    torch.testing.assert_close(_logits(model, inputs), _logits(plain, inputs), rtol=0, atol=1e-6)  # lora_B = 0

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in trainable}
    _train(model, inputs)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if '.lora_B.' in n)

    saved = _save(model, family, tmp_path / 'lora')
    assert json.loads((tmp_path / 'lora' / 'config.json').read_text())['lora'] == model.config.lora
    again, _ = build_model(ConfigDict(type='llava', model_name_or_path=saved))  # adapters re-injected, then loaded
    assert _lora_names(again) == lora and {n for n, p in again.named_parameters() if p.requires_grad} == trainable
    torch.testing.assert_close(_logits(again, inputs), _logits(model, inputs), rtol=0, atol=0)
    build_model(ConfigDict(type='llava', model_name_or_path=saved, lora=LORA))  # the same settings: goes on training
    with pytest.raises(ValueError, match='differs from the LoRA settings the checkpoint carries'):
        build_model(ConfigDict(type='llava', model_name_or_path=saved, lora=dict(r=8)))


@pytest.mark.parametrize('family_name', ['llava', 'openflamingo'])
def test_the_merged_model_gives_the_lora_models_logits_and_is_a_plain_checkpoint(tmp_path, family_name):
    plain, _ = build_model(ConfigDict(type=family_name, model_name_or_path='tiny'))
    model, family = build_model(ConfigDict(type=family_name, model_name_or_path='tiny', lora=LORA))
    inputs = _inputs(family_name, family)
    _train(model, inputs)  # non-zero adapters
    reference = _logits(model, inputs)
    assert (reference - _logits(plain, inputs)).abs().max() > 1e-3  # the adapters (and projector) changed it

    trained = _save(model, family, tmp_path / 'trained')
    assert main([trained, str(tmp_path / 'merged')]) == 0
    with safe_open(str(tmp_path / 'merged' / 'model.safetensors'), 'pt') as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if 'lora_' in k or 'base_layer' in k]
    assert not json.loads((tmp_path / 'merged' / 'config.json').read_text()).get('lora')
    merged, _ = build_model(ConfigDict(type=family_name, model_name_or_path=str(tmp_path / 'merged')))
    assert not _lora_names(merged) and not [n for n, _ in merged.named_parameters() if 'base_layer' in n]
    difference = (_logits(merged, inputs) - reference).abs().max().item()
    print(f'{family_name}: max |logit difference| merged vs LoRA = {difference:.2e}')
    assert difference <= 1e-5

    # in memory: the same fold, and the model is the plain architecture again
    merge_lora(model)
    assert not _lora_names(model) and model.config.lora is None
    torch.testing.assert_close(_logits(model, inputs), reference, rtol=0, atol=1e-5)
    assert model.state_dict().keys() == merged.state_dict().keys()


def test_merging_refuses_a_directory_without_lora_settings_and_names_it(tmp_path, capsys):
    model, family = build_model(ConfigDict(type='llava', model_name_or_path='tiny'))
    plain = _save(model, family, tmp_path / 'plain')
    with pytest.raises(MergeError, match=f"{plain} has no LoRA settings"):
        merge(plain, str(tmp_path / 'out'))
    with pytest.raises(SystemExit) as exit_info:
        main([plain, str(tmp_path / 'out')])
    assert exit_info.value.code == 2 and f'{plain} has no LoRA settings' in capsys.readouterr().err
    with pytest.raises(MergeError, match=f"{tmp_path}: no config.json"):
        merge(str(tmp_path), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
    with pytest.raises(ValueError, match='holds no LoRA adapters'):
        merge_lora(model)


def _word_tokenizer():
    vocab = {w: i for i, w in enumerate(['<unk>', '<s>', '</s>'] + [f'w{i}' for i in range(40)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>', bos_token='<s>', eos_token='</s>')


def _parts(tmp_path) -> tuple[str, str]:
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=43, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / 'lm')
    _word_tokenizer().save_pretrained(tmp_path / 'lm')
    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(tmp_path / 'clip')
    CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(
        tmp_path / 'clip')
    return str(tmp_path / 'lm'), str(tmp_path / 'clip')


def test_llava_lora_from_parts_and_on_a_transformers_llava_checkpoint(tmp_path):
    lm, clip = _parts(tmp_path)
    model, family = build_model(ConfigDict(type='llava', model_name_or_path=lm, vision_tower=clip, lora=LORA))
    assert _lora_names(model) and model.config.lora['target_modules'] == ['q_proj', 'v_proj']
    assert not [n for n, p in model.named_parameters() if p.requires_grad and n.startswith('model.language_model')
                and '.lora_' not in n]
    inputs = _inputs('llava', family)
    _train(model, inputs, steps=1)
    saved = _save(model, family, tmp_path / 'parts_lora')
    again, _ = build_model(ConfigDict(type='llava', model_name_or_path=saved))
    torch.testing.assert_close(_logits(again, inputs), _logits(model, inputs), rtol=0, atol=0)

    # a transformers `llava` directory (llava-1.5-7b-hf's layout): with LoRA it loads as our class, same weights
    tiny, tiny_family = build_model(ConfigDict(type='llava', model_name_or_path='tiny'))
    hf = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=tiny.config.vision_config.to_dict(), text_config=tiny.config.text_config.to_dict(),
        image_token_index=tiny.config.image_token_index, vision_feature_layer=tiny.config.vision_feature_layer))
    hf.load_state_dict(tiny.state_dict())
    hf_dir = _save(hf, tiny_family, tmp_path / 'hf_llava')
    assert json.loads((tmp_path / 'hf_llava' / 'config.json').read_text())['model_type'] == 'llava'
    adapted, adapted_family = build_model(ConfigDict(type='llava', model_name_or_path=hf_dir, lora=LORA))
    assert isinstance(adapted, MllmLlavaForConditionalGeneration) and _lora_names(adapted)
    inputs = _inputs('llava', adapted_family)
    torch.testing.assert_close(_logits(adapted, inputs), _logits(hf, inputs), rtol=0, atol=1e-6)
    saved = _save(adapted, adapted_family, tmp_path / 'hf_lora')
    assert json.loads((tmp_path / 'hf_lora' / 'config.json').read_text())['model_type'] == 'mllm_llava'
    again, _ = build_model(ConfigDict(type='llava', model_name_or_path=saved))
    assert _lora_names(again) == _lora_names(adapted)
    torch.testing.assert_close(_logits(again, inputs), _logits(adapted, inputs), rtol=0, atol=0)


def test_llava_device_map_loads_and_quantization_and_qlora_are_checked_without_a_gpu(tmp_path):
    model, family = build_model(ConfigDict(type='llava', model_name_or_path='tiny'))
    saved = _save(model, family, tmp_path / 'llava')
    mapped, _ = build_model(ConfigDict(type='llava', model_name_or_path=saved, device_map='cpu'))
    assert {p.device.type for p in mapped.parameters()} == {'cpu'}
    inputs = _inputs('llava', family)
    torch.testing.assert_close(_logits(mapped, inputs), _logits(model, inputs), rtol=0, atol=0)

    # QLoRA (quantization + lora) on a LLaVA-format checkpoint is a valid configuration ...
    check_model_args(ConfigDict(type='llava', model_name_or_path=saved, lora=LORA, quantization='4bit'))
    check_model_args(ConfigDict(type='llava', model_name_or_path=saved, quantization='8bit', device_map='auto'))
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:  # ... and without bitsandbytes an error that names it, before any weight is read
        for args in (dict(quantization='8bit'), dict(quantization='4bit', lora=LORA)):
            with pytest.raises(ImportError, match=f"quantization='{args['quantization']}' needs bitsandbytes"):
                build_model(ConfigDict(type='llava', model_name_or_path=saved, **args))

    lora_model, lora_family = build_model(ConfigDict(type='llava', model_name_or_path='tiny', lora=LORA))
    lora_dir = _save(lora_model, lora_family, tmp_path / 'lora')
    lm, clip = _parts(tmp_path)
    cases = [
        (dict(model_name_or_path=saved, quantization='int3'), "must be '8bit' or '4bit', got 'int3'"),
        (dict(model_name_or_path='tiny', quantization='4bit'), "quantization applies to a LLaVA-format checkpoint"),
        (dict(model_name_or_path=lm, vision_tower=clip, device_map='auto'),
         r"device_map applies to a LLaVA-format checkpoint.*LLaVA from parts"),
        (dict(model_name_or_path=lora_dir, quantization='4bit'), "carries LoRA adapters.*tools/merge_lora.py"),
        (dict(model_name_or_path='tiny', lora=dict(rank=8)), r"lora: unknown key\(s\) \['rank'\]"),
        (dict(model_name_or_path='tiny', lora=LORA, tune_mm_mlp_adapter=True), 'contradict'),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_model_args(ConfigDict(type='llava', **args))


def test_llava_quantization_keeps_tower_projector_and_head_unquantized_and_qlora_trains_adapters_and_projector(
        tmp_path, monkeypatch):
    """What runs without a GPU of the quantized path: the bitsandbytes config (QLoRA's NF4 + double quantization;
    only the language model's decoder quantized, by transformers' own module-name rule) and the QLoRA training plan
    (peft's k-bit preparation, then adapters; the projector still trains), on an unquantized load."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    from mllm.models.llava import modeling_llava
    from mllm.models.lora import bnb_config

    config = bnb_config('4bit', torch.bfloat16, modeling_llava.LLAVA_UNQUANTIZED)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == 'nf4' and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and bnb_config('8bit').load_in_8bit
    model, family = build_model(ConfigDict(type='llava', model_name_or_path='tiny'))
    linear = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    converted = {n for n in linear if should_convert_module(n, config.llm_int8_skip_modules)}
    assert converted and converted == {n for n in linear if n.startswith('model.language_model.layers.')}

    saved = _save(model, family, tmp_path / 'llava')
    prepared, prepare = [], modeling_llava.prepare_for_kbit_training
    monkeypatch.setattr(modeling_llava, 'loading_kwargs', lambda *a, **k: {})  # no bitsandbytes here: load as is
    monkeypatch.setattr(modeling_llava, 'prepare_for_kbit_training',
                        lambda m: prepared.append(_lora_names(m)) or prepare(m))
    qlora, _ = build_model(ConfigDict(type='llava', model_name_or_path=saved, quantization='4bit', lora=LORA))
    assert prepared == [set()]  # prepared once, before the adapters were injected
    projector = {n for n, _ in qlora.named_parameters() if n.startswith('model.multi_modal_projector.')}
    assert {n for n, p in qlora.named_parameters() if p.requires_grad} == _lora_names(qlora) | projector
