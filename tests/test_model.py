"""LLaVA builder: tiny preset, building from parts, projectors, freezing, save/reload parity."""
import logging

import pytest
import torch
from mmengine.config import ConfigDict
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mllm.models import build_model
from mllm.models.llava.builder import num_image_tokens
from mllm.models.llava.modeling_llava import LinearProjector


def _inputs(preprocessor, batch=2):
    n = preprocessor['num_image_tokens']
    image_id = preprocessor['text'].convert_tokens_to_ids('<image>')
    ids = torch.tensor([[1] + [image_id] * n + [10, 11, 12]] * batch)
    size = preprocessor['image'].crop_size['height']
    torch.manual_seed(0)
    return {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'pixel_values': torch.randn(batch, 3, size, size)}


def test_tiny_preset_counts_image_tokens_from_the_vision_config():
    model, family = build_model(ConfigDict(model_name_or_path='tiny', tiny=dict(image_size=48, patch_size=8)))
    pre = family.preprocessor
    assert pre['num_image_tokens'] == 36 == num_image_tokens(model.config)
    features = model.model.get_image_features(pixel_values=torch.zeros(1, 3, 48, 48))
    features = features.pooler_output if hasattr(features, 'pooler_output') else features
    assert sum(f.shape[0] for f in features) == 36  # what the model splices = what the data side expands
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 1e7
    assert model.config.vision_feature_layer == -2


def test_tiny_preset_is_deterministic():
    a, _ = build_model(ConfigDict(model_name_or_path='tiny'))
    b, _ = build_model(ConfigDict(model_name_or_path='tiny'))
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name


def test_projector_choice_and_freezing():
    model, _ = build_model(ConfigDict(model_name_or_path='tiny', projector_type='linear'))
    assert isinstance(model.model.multi_modal_projector, LinearProjector)
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())  # frozen by default
    assert all(p.requires_grad for p in model.model.language_model.parameters())

    model, _ = build_model(ConfigDict(model_name_or_path='tiny', tune_mm_mlp_adapter=True))
    trainable = {n.split('.')[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'multi_modal_projector'}

    model, _ = build_model(ConfigDict(model_name_or_path='tiny', freeze_backbone=True, freeze_vision_tower=False))
    assert not any(p.requires_grad for p in model.model.language_model.parameters())
    assert all(p.requires_grad for p in model.model.vision_tower.parameters())
    with pytest.raises(ValueError, match='projector_type'):
        build_model(ConfigDict(model_name_or_path='tiny', projector_type='mlp3x'))


def test_save_and_reload_give_identical_outputs(tmp_path):
    model, family = build_model(ConfigDict(model_name_or_path='tiny', projector_type='linear'))
    pre = family.preprocessor
    model.eval()
    model.save_pretrained(tmp_path)
    pre['text'].save_pretrained(tmp_path)
    pre['image'].save_pretrained(tmp_path)
    again, family2 = build_model(ConfigDict(model_name_or_path=str(tmp_path)))
    pre2 = family2.preprocessor
    again.eval()
    assert isinstance(again.model.multi_modal_projector, LinearProjector)
    assert pre2['num_image_tokens'] == pre['num_image_tokens']
    inputs = _inputs(pre)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**inputs).logits)
        out1 = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        out2 = again.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(out1, out2)


def _word_tokenizer():
    vocab = {w: i for i, w in enumerate(['<unk>', '<s>', '</s>'] + [f'w{i}' for i in range(40)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>', bos_token='<s>', eos_token='</s>')


def test_build_from_language_model_and_vision_tower(tmp_path):
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=43, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2))
    lm.save_pretrained(tmp_path / 'lm')
    _word_tokenizer().save_pretrained(tmp_path / 'lm')
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8))
    tower.save_pretrained(tmp_path / 'clip')
    CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(
        tmp_path / 'clip')

    with pytest.raises(ValueError, match='vision_tower'):
        build_model(ConfigDict(model_name_or_path=str(tmp_path / 'lm')))
    model, family = build_model(ConfigDict(model_name_or_path=str(tmp_path / 'lm'),
                                           vision_tower=str(tmp_path / 'clip')))
    pre = family.preprocessor
    assert torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight, lm.model.layers[0].mlp.up_proj.weight)
    tower_state = model.model.vision_tower.state_dict()
    assert all(torch.equal(tower_state[k], v) for k, v in tower.state_dict().items())
    # '<image>' and a pad token were added and the embeddings grew to cover them
    assert len(pre['text']) == 45 and model.get_input_embeddings().weight.shape[0] == 45
    assert model.config.image_token_index == pre['text'].convert_tokens_to_ids('<image>') >= 43
    assert pre['num_image_tokens'] == 16
    with torch.no_grad():
        logits = model(**_inputs(pre)).logits
    assert logits.shape == (2, 1 + 16 + 3, 45)


def test_from_parts_assigns_the_loaded_parts_keeps_ties_and_initialises_only_the_projector(tmp_path, monkeypatch):
    """No random full-size LLaVA is built and overwritten (at 7B that was ~40 GB per rank): the composite starts on
    the meta device, the loaded modules are put in place, and weight initialisation touches the projector alone.
    An LM with tied embeddings keeps one tensor for both ends, through the added tokens' resize too."""
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=43, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    assert lm.lm_head.weight is lm.model.embed_tokens.weight
    lm.save_pretrained(tmp_path / 'lm')
    _word_tokenizer().save_pretrained(tmp_path / 'lm')
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=8))
    tower.save_pretrained(tmp_path / 'clip')
    CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(
        tmp_path / 'clip')
    from mllm.models.llava.modeling_llava import MllmLlavaForConditionalGeneration

    initialised = []
    original = MllmLlavaForConditionalGeneration._init_weights

    def spy(self, module):
        if any(p.device.type != 'meta' for p in module.parameters(recurse=False)):
            initialised.append(module)
        return original(self, module)
    monkeypatch.setattr(MllmLlavaForConditionalGeneration, '_init_weights', spy)
    model, _ = build_model(ConfigDict(model_name_or_path=str(tmp_path / 'lm'), vision_tower=str(tmp_path / 'clip')))
    projector = set(model.model.multi_modal_projector.modules())
    assert initialised and set(initialised) <= projector  # nothing outside the projector got random weights
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # still tied ...
    assert model.lm_head.weight.shape[0] == 45  # ... after growing by '<image>' and '<pad>'
    assert model.config.tie_word_embeddings
    assert not [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == 'meta']
    loaded = LlamaForCausalLM.from_pretrained(tmp_path / 'lm')
    assert torch.equal(model.model.language_model.embed_tokens.weight[:43], loaded.model.embed_tokens.weight)
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight,
                       loaded.model.layers[0].self_attn.q_proj.weight)


def test_flash_attention_request_falls_back_to_sdpa(caplog):
    with caplog.at_level(logging.WARNING):
        model, _ = build_model(ConfigDict(model_name_or_path='tiny', attn_implementation='flash_attention_2'))
    assert 'flash-attn is not installed' in caplog.text


def test_tiny_vision_position_init_is_configurable():
    default, _ = build_model(ConfigDict(model_name_or_path='tiny'))
    visible, _ = build_model(ConfigDict(model_name_or_path='tiny', tiny=dict(vision_position_std=1.0)))
    std_default = default.model.vision_tower.embeddings.position_embedding.weight.std().item()
    std_visible = visible.model.vision_tower.embeddings.position_embedding.weight.std().item()
    assert std_default == pytest.approx(0.02, rel=0.2)
    assert std_visible == pytest.approx(1.0, rel=0.1)
    # everything else is initialised identically (same seed, same order)
    assert torch.equal(default.model.language_model.layers[0].mlp.up_proj.weight,
                       visible.model.language_model.layers[0].mlp.up_proj.weight)
