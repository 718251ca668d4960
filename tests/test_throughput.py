"""engine/throughput.py: the FLOP formula (against the TRL anchor's own function and by hand) and the callback's
keys in a tiny finetune.py run."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from mllm.engine.throughput import ThroughputCallback, flop_counter

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / 'shared' / 'bench' / 'trl'
needs_anchor = pytest.mark.skipif(not (ANCHOR / 'bench_trl.py').is_file(), reason=f'no TRL anchor at {ANCHOR}')


@pytest.fixture(scope='module')
def anchor():
    sys.path.insert(0, str(ANCHOR))
    spec = importlib.util.spec_from_file_location('bench_trl_anchor', ANCHOR / 'bench_trl.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_anchor
def test_formula_equals_the_anchors_on_its_model_and_real_batches(anchor):
    import make_data
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ANCHOR / 'data' / 'tokenizer'))
    model = anchor.build_model(tok)
    samples = json.load(open(ANCHOR / 'data' / 'llava_format.json'))
    _, seq_lens = make_data.length_stats(samples, tok, make_data.TokenCounter(tok), anchor.IMAGE_TOKENS)
    # vision layers a forward actually executes (the anchor counts them with hooks too)
    calls = []
    hooks = [layer.register_forward_hook(lambda *a: calls.append(1))
             for layer in model.model.vision_tower.encoder.layers]
    with torch.no_grad():
        model.model.get_image_features(pixel_values=torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    counter, note = flop_counter(model)
    assert note is None and counter.vision_layers == len(calls) == 4
    pc = anchor.param_counts(model)
    for start in range(0, 512, 8):  # every batch of 8 consecutive samples, and a few odd sizes
        lens = seq_lens[start:start + 8 - (start // 8) % 3]
        b = {'bsz': len(lens), 'seq_len': max(lens), 'seq_lens': lens, 'real_tokens': sum(lens),
             'padded_tokens': len(lens) * max(lens), 'images': len(lens)}
        assert counter.step(lens, max(lens), len(lens)) == anchor.flops_for_batch(b, pc, model.config, len(calls))


def test_hand_computed_tiny_config():
    vc = CLIPVisionConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                          image_size=4, patch_size=2)
    tc = LlamaConfig(vocab_size=10, hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=2)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vc, text_config=tc, image_token_index=3))
    model.model.vision_tower.requires_grad_(False)
    # by hand: Llama layer q,k,v,o 4*16 + MLP 3*4*8 + 2 norms 4 = 168; + final norm 4 + lm_head 10*4 -> N_lm 212;
    # CLIP layer 4*(16+4) + (32+8) + (32+4) + 2 LayerNorms 2*8 = 172; patch conv 3*2*2*4 = 48;
    # projector (4*4+4) + (4*4+4) = 40; 4 patches (+ CLS = 5) per image, 4 image tokens
    counter, _ = flop_counter(model)
    assert (counter.n_lm, counter.n_vlayer, counter.n_patch, counter.n_proj) == (212, 172, 48, 40)
    assert (counter.patches, counter.vision_seq, counter.image_tokens) == (4, 5, 4)
    flops = counter.step([6, 3], padded_len=6, n_images=2)
    # real: 6*212*9 + 6*40*4*2 + 2*(48*4 + 172*5)*2 = 11448 + 1920 + 4208; attn 12*4*(36+9) + 4*4*25*2 = 2160 + 800
    assert flops['real'] == {'dense': 17576, 'attn': 2960, 'total': 20536}
    # padded: 6*212*12 + 1920 + 4208; attn 12*4*(2*36) + 800
    assert flops['padded'] == {'dense': 21392, 'attn': 4256, 'total': 25648}
    # a trained tower counts fwd+bwd (6 per parameter per token, 3x the attention)
    model.model.vision_tower.requires_grad_(True)
    trained, _ = flop_counter(model)
    assert trained.step([6, 3], 6, 2)['real']['total'] == 20536 + 2 * (4208 + 800)


def test_other_families_count_tokens_without_mfu():
    counter, note = flop_counter(torch.nn.Linear(2, 2))
    assert counter is None and 'LLaVA family only' in note


def test_callback_writes_keys_in_a_tiny_finetune_run(tmp_path):
    from mllm.pipeline.finetune import main
    from tests.test_end_to_end import DEMO_CONFIG, _data_overrides

    root, out = tmp_path / 'data', tmp_path / 'run'
    trainer = main([DEMO_CONFIG, '--cfg-options', *_data_overrides(str(root)), 'data_args.multitest=None',
                    'data_args.validation=None',
                    '--max_steps', '4', '--per_device_train_batch_size', '4', '--logging_steps', '2',
                    '--eval_strategy', 'no', '--save_final_model', 'false', '--output_dir', str(out)])
    assert any(isinstance(c, ThroughputCallback) for c in trainer.callback_handler.callbacks)
    results = json.load(open(out / 'train_results.json'))
    keys = ('real_tokens_per_s', 'padded_tokens_per_s', 'padding_fraction', 'mfu_real', 'mfu_padded',
            'matmul_peak_gflops', 'real_tokens', 'padded_tokens')
    assert all(k in results for k in keys), results
    assert 0 < results['mfu_real'] <= results['mfu_padded'] < 1.5 and results['matmul_peak_gflops'] > 0
    assert results['real_tokens'] <= results['padded_tokens'] and 0 <= results['padding_fraction'] < 1
    steps = [e for e in trainer.state.log_history if 'loss' in e]
    assert len(steps) == 2 and all(e['real_tokens_per_s'] > 0 and e['mfu_real'] > 0 for e in steps)
    # every training token was counted: 4 steps x 4 samples, each at least its image tokens long
    assert results['real_tokens'] >= 16 * 25


def test_a_packed_batch_is_counted_by_its_samples_not_its_rows():
    """A packed batch has no attention mask: its collator records the samples' lengths; padded tokens are rows x
    row length, and the attention FLOPs of the real tokens use each sample's own length."""
    from mllm.engine.throughput import batch_summary

    batch = {'input_ids': torch.zeros(2, 10, dtype=torch.long), 'sample_lengths': torch.tensor([6, 4, 7]),
             'pixel_values': torch.zeros(3, 3, 8, 8)}
    assert batch_summary(batch) == {'seq_lens': [6, 4, 7], 'padded_len': 10, 'rows': 2, 'images': 3}


def test_an_mfu_above_one_is_flagged_once_as_a_busy_peak(caplog):
    """A peak measured while the machine was busy makes MFU exceed 1 later: that is warned about, once."""
    from types import SimpleNamespace

    callback = ThroughputCallback()
    callback.counter, callback.peak = object(), 10.0  # 10 GFLOP/s
    args = SimpleNamespace(world_size=1, device='cpu')
    acc = {'real': 90, 'padded': 100, 'flops_real': 18e9, 'flops_padded': 20e9, 'steps': 1}
    with caplog.at_level('WARNING', logger='mllm.engine.throughput'):
        figures = callback._figures(acc, 1.0, args)  # 20 GFLOP in 1 s against a 10 GFLOP/s peak
        callback._figures(acc, 1.0, args)
    assert figures['mfu_padded'] == pytest.approx(2.0) and figures['mfu_real'] == pytest.approx(1.8)
    warnings = [r for r in caplog.records if 'above 1' in r.getMessage()]
    assert len(warnings) == 1 and 'MLLM_MATMUL_PEAK_GFLOPS' in warnings[0].getMessage()
    quiet = ThroughputCallback()
    quiet.counter, quiet.peak = object(), 100.0
    caplog.clear()
    quiet._figures(acc, 1.0, args)
    assert not caplog.records
