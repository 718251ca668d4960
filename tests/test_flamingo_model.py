"""OpenFlamingo / Otter models: config round trip, zero-gate identity, media masking, cached and batched
generation, last-image sensitivity, save/reload, device maps, freezing, gradient checkpointing."""
import socket

import pytest
import torch
from accelerate import infer_auto_device_map
from transformers import AutoConfig, AutoModelForImageTextToText, MptConfig

from mllm.models.flamingo import (
    OpenFlamingoConfig,
    OpenFlamingoForConditionalGeneration,
    OtterConfig,
    OtterForConditionalGeneration,
    apply_flamingo_freezing,
    build_tiny_flamingo,
    format_trainable_table,
    tiny_flamingo_config,
)
from tests.helpers import open_flamingo_gates

VOCAB = 1000
MEDIA, EOC, PAD = VOCAB - 2, VOCAB - 1, 0


def _model(text='llama', family='openflamingo', active=True, **kw):
    model = build_tiny_flamingo(VOCAB, text_model_type=text, family=family, **kw).eval()
    return open_flamingo_gates(model) if active else model


def _images(batch, n, seed=0, frames=1):
    return torch.randn(batch, n, frames, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# prompt: 2 text tokens, image 1, 3 text tokens, image 2, 3 text tokens
IDS = torch.tensor([[1, 5, MEDIA, 6, 7, 8, MEDIA, 9, 10, 11]])
IMG1, IMG2 = 2, 6


def _greedy(model, ids, mask, images, **kw):
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, pixel_values=images, max_new_tokens=8,
                              min_new_tokens=8, do_sample=False, pad_token_id=PAD, **kw)[:, ids.shape[1]:]


def test_config_round_trip_and_registration(tmp_path):
    for cls in (OpenFlamingoConfig, OtterConfig):
        config = tiny_flamingo_config(VOCAB, family='otter' if cls is OtterConfig else 'openflamingo',
                                      text_config=MptConfig(d_model=64, n_heads=4, n_layers=2, vocab_size=VOCAB),
                                      max_num_media=3, only_attend_immediate_media=False)
        assert type(config) is cls
        again = cls.from_dict(config.to_dict())
        assert again.to_dict() == config.to_dict()
        assert isinstance(again.text_config, MptConfig) and again.text_config.n_layers == 2
        assert (again.max_num_media, again.only_attend_immediate_media, again.media_token_id) == (3, False, MEDIA)
        config.save_pretrained(tmp_path / cls.model_type)
        loaded = AutoConfig.from_pretrained(tmp_path / cls.model_type)
        assert type(loaded) is cls and loaded.vision_config.patch_size == 8
    assert OpenFlamingoConfig().only_attend_immediate_media is True
    assert OpenFlamingoConfig().perceiver_depth == 6 and OpenFlamingoConfig().max_num_media is None
    with pytest.raises(ValueError, match='cross_attn_every_n_layers'):
        OpenFlamingoConfig(cross_attn_every_n_layers=0)


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_layout_keeps_the_lm_weight_names(text):
    model = _model(text, active=False)
    bare = type(model.language_model)(model.config.text_config)
    lm_keys = {k for k in model.language_model.state_dict() if '.gated_cross_attn.' not in k}
    assert lm_keys == set(bare.state_dict())  # an LM checkpoint loads into language_model unchanged
    names = [n for n, _ in model.gated_cross_attn_blocks()]
    layers = 'language_model.model.layers' if text == 'llama' else 'language_model.transformer.blocks'
    assert names == [f'{layers}.1.gated_cross_attn', f'{layers}.3.gated_cross_attn']  # every 2nd layer
    gates = [(float(b.attn_gate.detach()), float(b.ff_gate.detach())) for _, b in model.gated_cross_attn_blocks()]
    assert gates == [(0.0, 0.0), (0.0, 0.0)]
    assert 5e5 < sum(p.numel() for p in model.parameters()) < 5e6


def test_vision_features_are_patch_tokens_before_post_layernorm():
    model = _model(active=False)
    seen = {}
    model.perceiver.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    images = _images(1, 2)
    with torch.no_grad():
        model(input_ids=IDS, pixel_values=images)
        ref = model.vision_encoder(pixel_values=images.flatten(0, 2), output_hidden_states=True)
    assert seen['x'].shape == (1, 2, 1, 16, 32)  # 16 patches, CLS dropped
    patches = ref.hidden_states[-1][:, 1:]
    assert torch.equal(seen['x'].reshape(2, 16, 32), patches)
    post = model.vision_encoder.post_layernorm(patches)
    assert (seen['x'].reshape(2, 16, 32) - post).abs().max() > 1e-2


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_zero_gates_equal_the_language_model(text):
    model = _model(text, active=False)
    with torch.no_grad():
        ours = model(input_ids=IDS, attention_mask=torch.ones_like(IDS), pixel_values=_images(1, 2)).logits
        lm = model.language_model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits
    assert torch.allclose(ours, lm, atol=1e-6)


def test_an_image_changes_tokens_after_it_but_not_before_the_first_image():
    model = _model()
    with torch.no_grad():
        a = model(input_ids=IDS, pixel_values=_images(1, 2, seed=0)).logits
        b = model(input_ids=IDS, pixel_values=_images(1, 2, seed=1)).logits
        lm = model.language_model(input_ids=IDS).logits
    assert torch.allclose(a[:, :IMG1], b[:, :IMG1], atol=1e-6)
    assert (a[:, IMG1:] - b[:, IMG1:]).abs().amax(-1).min() > 1e-3  # every token from the first image on
    assert (a - lm).abs().max() > 1e-2  # open gates: no longer the bare LM


@pytest.mark.parametrize('immediate', [True, False])
def test_only_immediate_media_at_the_cross_attention(immediate):
    """Perturbing image 1 changes the cross-attention output only on tokens in [image 1, image 2) when
    only_attend_immediate_media (later tokens still change through self-attention, so this is read at
    the blocks). Without it, tokens after image 2 see image 1 too."""
    model = _model(only_attend_immediate_media=immediate)
    outputs = []
    for _, block in model.gated_cross_attn_blocks():
        block.attn.register_forward_hook(lambda m, args, out: outputs.append(out))
    first = _images(1, 2, seed=0)
    changed = first.clone()
    changed[:, 0] = _images(1, 1, seed=5)[:, 0]
    with torch.no_grad():
        model(input_ids=IDS, pixel_values=first)
        model(input_ids=IDS, pixel_values=changed)
    a, b = outputs[0], outputs[2]  # first gated block, two runs (its input before the block is unchanged)
    diff = (a - b).abs().amax(-1)[0]
    assert torch.equal(a[:, :IMG1], torch.zeros_like(a[:, :IMG1]))  # nothing to attend before image 1
    assert diff[:IMG1].max() == 0
    assert diff[IMG1:IMG2].min() > 1e-3
    if immediate:
        assert diff[IMG2:].max() == 0
    else:
        assert diff[IMG2:].min() > 1e-4


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_cached_and_uncached_greedy_decoding_agree(text):
    model = _model(text)
    ids = torch.cat([IDS, torch.tensor([[1, MEDIA, 12, 13, 14, 15, MEDIA, 16, 17, 18]])])
    mask, images = torch.ones_like(ids), _images(2, 2)
    cached = _greedy(model, ids, mask, images, use_cache=True)
    uncached = _greedy(model, ids, mask, images, use_cache=False)
    assert cached.shape == (2, 8)
    assert torch.equal(cached, uncached)
    other = _greedy(model, ids, mask, _images(2, 2, seed=3), use_cache=True)
    assert not torch.equal(cached, other)  # the images matter to these tokens


def test_a_cached_step_keeps_attending_to_the_last_image():
    """One cached step with the media offset that generate passes reproduces the full forward;
    without it (Otter's released behaviour) the new token sees no image and its logits differ."""
    model = _model()
    images = _images(1, 2)
    nxt = torch.tensor([[42]])
    full_ids = torch.cat([IDS, nxt], 1)
    with torch.no_grad():
        full = model(input_ids=full_ids, pixel_values=images).logits[:, -1]
        media = model.get_media_features(images)
        prefix = model(input_ids=IDS, media_features=media, use_cache=True)
        kept = model(input_ids=nxt, media_features=media, cache=prefix.cache,
                     media_offset=torch.tensor([2]), use_cache=True).logits[:, -1]
        prefix = model(input_ids=IDS, media_features=media, use_cache=True)
        lost = model(input_ids=nxt, media_features=media, cache=prefix.cache, use_cache=True).logits[:, -1]
    assert torch.allclose(kept, full, atol=1e-5)
    assert (lost - full).abs().max() > 1e-3


def test_vision_runs_once_per_generate_call():
    model = _model()
    calls = []
    model.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    model.perceiver.register_forward_hook(lambda *a: calls.append(2))
    _greedy(model, IDS, torch.ones_like(IDS), _images(1, 2), use_cache=True)
    assert calls == [1, 2]


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_batch_of_one_and_left_padded_batch_give_the_same_tokens(text):
    model = _model(text)
    prompts = [[1, 5, MEDIA, 6, 7, MEDIA, 9], [1, MEDIA, 20, 21, 22, 23, 24, MEDIA, 25, 26, 27], [1, 30, MEDIA, 31]]
    images = [_images(1, 2, seed=s) for s in range(3)]
    alone = [_greedy(model, torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long), im)
             for p, im in zip(prompts, images)]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batched = _greedy(model, ids, mask, torch.cat(images))
    for k in range(3):
        assert torch.equal(batched[k], alone[k][0]), k


def test_changing_only_the_last_image_changes_the_answer():
    model = _model()
    first = _images(1, 2, seed=0)
    last_changed = first.clone()
    last_changed[:, 1] = _images(1, 1, seed=9)[:, 0]
    with torch.no_grad():
        kw = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=PAD, output_scores=True,
                  return_dict_in_generate=True)
        a = model.generate(input_ids=IDS, pixel_values=first, **kw)
        b = model.generate(input_ids=IDS, pixel_values=last_changed, **kw)
        c = model.generate(input_ids=IDS, pixel_values=first.clone(), **kw)
    assert torch.equal(a.sequences, c.sequences)
    assert not torch.equal(a.sequences, b.sequences)
    # every step (min_new_tokens sets the eos score to -inf in both: compare finite scores)
    assert all((sa - sb)[sa.isfinite()].abs().max() > 1e-3 for sa, sb in zip(a.scores, b.scores))


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('network access')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)


@pytest.mark.parametrize('text,family', [('llama', 'openflamingo'), ('mpt', 'otter')])
def test_save_and_reload_give_identical_outputs_offline(tmp_path, monkeypatch, text, family):
    _no_network(monkeypatch)
    model = _model(text, family)
    model.save_pretrained(tmp_path)
    assert (tmp_path / 'model.safetensors').exists()
    cls = OtterForConditionalGeneration if family == 'otter' else OpenFlamingoForConditionalGeneration
    for again in (cls.from_pretrained(tmp_path), AutoModelForImageTextToText.from_pretrained(tmp_path),
                  cls.from_pretrained(tmp_path, device_map='cpu'),
                  cls.from_pretrained(tmp_path, device_map={'': 'cpu'})):
        assert type(again) is cls
        again.eval()
        images = _images(1, 2)
        with torch.no_grad():
            assert torch.equal(model(input_ids=IDS, pixel_values=images).logits,
                               again(input_ids=IDS, pixel_values=images).logits)
        assert torch.equal(_greedy(model, IDS, torch.ones_like(IDS), images),
                           _greedy(again, IDS, torch.ones_like(IDS), images))
        assert all(float(b.attn_gate.detach()) == 1.0 for _, b in again.gated_cross_attn_blocks())


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_a_checkpoint_without_flamingo_weights_loads_with_closed_gates(tmp_path, text):
    """LM + vision weights only (as when starting from a plain LM): gates come up exactly 0, so the
    loaded model predicts like its LM, and the LM weights are the checkpoint's."""
    from safetensors.torch import load_file, save_file
    model = _model(text)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / 'model.safetensors')
    kept = {k: v for k, v in state.items() if '.gated_cross_attn.' not in k}
    assert len(kept) < len(state)
    save_file(kept, tmp_path / 'model.safetensors', metadata={'format': 'pt'})
    again = OpenFlamingoForConditionalGeneration.from_pretrained(tmp_path).eval()
    blocks = again.gated_cross_attn_blocks()
    assert all(float(b.attn_gate.detach()) == 0 == float(b.ff_gate.detach()) for _, b in blocks)
    assert torch.equal(again.language_model.lm_head.weight, model.language_model.lm_head.weight)
    with torch.no_grad():
        assert torch.allclose(again(input_ids=IDS, pixel_values=_images(1, 2)).logits,
                              model.language_model(input_ids=IDS).logits, atol=1e-6)


def _device_of(device_map, name):
    best = max((k for k in device_map if k == '' or name == k or name.startswith(k + '.')), key=len)
    return device_map[best]


@pytest.mark.parametrize('text', ['llama', 'mpt'])
def test_device_map_never_separates_a_decoder_layer_from_its_cross_attention(text):
    model = _model(text, active=False)
    layer_size = sum(p.numel() * 4 for p in model.decoder_layers[1].parameters())
    total = sum(p.numel() * 4 for p in model.parameters())
    # A first device that fits about half the model, so the split falls among the decoder layers.
    for budget in (total // 2, total // 2 + layer_size // 2, total // 2 + layer_size // 3):
        device_map = infer_auto_device_map(model, max_memory={0: budget, 1: budget, 'cpu': 10 * total},
                                           no_split_module_classes=list(model._no_split_modules))
        assert len(set(device_map.values())) >= 2, device_map
        for name, _ in model.gated_cross_attn_blocks():
            layer = name.rsplit('.', 1)[0]
            assert _device_of(device_map, name) == _device_of(device_map, layer), (name, device_map)
            assert not any(k.startswith(layer + '.') for k in device_map), (layer, device_map)  # layer kept whole
    layer_devices = {_device_of(device_map, f'{name.rsplit(".", 2)[0]}.{i}')
                     for name, _ in model.gated_cross_attn_blocks() for i in range(4)}
    assert len(layer_devices) >= 2  # the layers really are spread, so the check above bites


def test_offloaded_decoder_layer_with_its_block_predicts_identically(tmp_path):
    """A device map that offloads the last decoder layer (with its block) to disk still predicts the same:
    the block's weights are brought in by accelerate's hooks when the pre-hook calls it."""
    model = _model()
    model.save_pretrained(tmp_path / 'm')
    device_map = {'vision_encoder': 'cpu', 'perceiver': 'cpu', 'language_model.model.embed_tokens': 'cpu',
                  'language_model.model.layers.0': 'cpu', 'language_model.model.layers.1': 'cpu',
                  'language_model.model.layers.2': 'cpu', 'language_model.model.layers.3': 'disk',
                  'language_model.model.norm': 'cpu', 'language_model.model.rotary_emb': 'cpu',
                  'language_model.lm_head': 'cpu'}
    again = OpenFlamingoForConditionalGeneration.from_pretrained(tmp_path / 'm', device_map=device_map,
                                                                 offload_folder=str(tmp_path / 'off')).eval()
    images = _images(1, 2)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=IDS, pixel_values=images).logits,
                              again(input_ids=IDS, pixel_values=images).logits, atol=1e-6)


def test_default_freezing_trains_only_perceiver_cross_attention_and_new_rows():
    model = _model()
    new_ids = [MEDIA, EOC]
    table = apply_flamingo_freezing(model, new_token_ids=new_ids)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n in trainable if n.startswith('perceiver.') or '.gated_cross_attn.' in n}
    assert trainable == expected | {'language_model.model.embed_tokens.weight'}
    assert {n for n, _ in model.named_parameters() if n.startswith('perceiver.')} <= trainable
    rows = dict((g, (t, n)) for g, t, n in table)
    assert rows['input_embeddings'][0] == 2 * 128
    assert rows['vision_encoder'][0] == 0 == rows['language_model'][0]
    assert rows['total'][1] == sum(p.numel() for p in model.parameters())
    assert 'input_embeddings' in format_trainable_table(table)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([[1, MEDIA, 5, 6, EOC, MEDIA, 7, 8, EOC]])
    for _ in range(2):
        model(input_ids=ids, pixel_values=_images(1, 2), labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    emb = model.get_input_embeddings().weight.detach()
    old = [i for i in range(VOCAB) if i not in new_ids]
    assert torch.equal(emb[old], before['language_model.model.embed_tokens.weight'][old])
    assert (emb[new_ids] - before['language_model.model.embed_tokens.weight'][new_ids]).abs().amin(-1).min() > 0
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        if name.startswith(('vision_encoder.', 'language_model.')) and '.gated_cross_attn.' not in name \
                and 'embed_tokens' not in name:
            assert not changed, name
    assert not torch.equal(model.perceiver.latents.detach(), before['perceiver.latents'])

    table = apply_flamingo_freezing(model, full=True)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith('language_model.'))
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    assert dict((g, t) for g, t, _ in table)['input_embeddings'] == VOCAB * 128
    model(input_ids=ids, pixel_values=_images(1, 2), labels=ids).loss.backward()
    assert model.get_input_embeddings().weight.grad[old].abs().max() > 0  # old hook removed


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.tensor([[1, MEDIA, 5, 6, 7, MEDIA, 8, 9]])
    grads, calls = [], []
    for gc in (False, True):
        model = _model()
        model.train()
        if gc:
            model.gradient_checkpointing_enable()
        block = model.gated_cross_attn_blocks()[0][1]
        block.register_forward_pre_hook(lambda *a, gc=gc: calls.append(gc))  # pre-hook: recompute stops early
        model(input_ids=ids, pixel_values=_images(1, 2), labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert calls.count(False) == 1 and calls.count(True) == 2  # the block is recomputed in backward
    assert grads[0].keys() == grads[1].keys()
    assert any(n.startswith('perceiver.') for n in grads[1]) and any('vision_encoder' in n for n in grads[1])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_time_embeddings_and_media_count_checks():
    model = _model(max_num_media=2, max_num_frames=3)
    assert model.perceiver.media_time_embs.shape == (2, 1, 32) and model.perceiver.frame_embs.shape == (3, 32)
    with torch.no_grad():
        out = model(input_ids=IDS, pixel_values=_images(1, 2, frames=3)).logits
        assert out.shape == (1, IDS.shape[1], VOCAB)
        with pytest.raises(ValueError, match='max_num_media'):
            model(input_ids=IDS, pixel_values=_images(1, 3))
        with pytest.raises(ValueError, match='max_num_frames'):
            model(input_ids=IDS, pixel_values=_images(1, 2, frames=4))
        with pytest.raises(ValueError, match='<image> tokens'):
            model(input_ids=IDS, pixel_values=_images(1, 1))
    assert _model(active=False).perceiver.media_time_embs is None  # released OpenFlamingo layout


def test_tiny_preset_is_deterministic_and_otter_is_its_own_type():
    a, b = build_tiny_flamingo(VOCAB), build_tiny_flamingo(VOCAB)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    otter = build_tiny_flamingo(VOCAB, family='otter')
    assert otter.config.model_type == 'mllm_otter' and isinstance(otter, OpenFlamingoForConditionalGeneration)
    assert a.config.model_type == 'mllm_openflamingo'
