"""Packing for the Flamingo family (FlamingoCollator(pack_tokens=...) from `family.collator`; OpenFlamingo / Otter):
samples share rows without seeing each other, through self-attention (restarting positions) or cross-attention
(media time restarting at each sample's own first image).

- the loss and every gradient of a packed batch equal those of the same samples padded one per row;
- changing one packed sample's image or text leaves the others' logits unchanged, and each packed sample's logits
  equal its logits alone; a sample whose text starts before its first image sees no image there (not the
  previous sample's last one);
- a row's media are its samples' media in token order;
- attending to every earlier image (only_attend_immediate_media=False) cannot be packed and says why.
"""
import pytest
import torch

from mllm.dataset.root import IGNORE_INDEX
from mllm.engine.collator import pack_rows
from mllm.models import build_model
from mllm.models.flamingo.modeling_flamingo import packed_text_time
from tests.helpers import open_flamingo_gates, packed_sample_logits


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    model, family = build_model({'type': 'openflamingo', 'model_name_or_path': 'tiny'})
    return open_flamingo_gates(model).train(), family


# (text before the first image, number of images, prompt after each image, answer). Sample 2 starts with text.
LAYOUTS = [([], 1, [10, 11], [20, 21]), ([], 2, [12], [22, 23, 24]), ([13, 14], 1, [15], [25]),
           ([], 1, [16, 17, 18], [26, 27])]


def _samples(model, layouts, seed=0):
    media = model.config.media_token_id
    generator = torch.Generator().manual_seed(seed)
    out = []
    for lead, images, prompt, answer in layouts:
        ids = [1, *lead]
        for _ in range(images):
            ids += [media, *prompt]
        ids = torch.tensor([*ids, *answer])
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-len(answer):] = torch.tensor(answer)
        out.append({'input_ids': ids, 'labels': labels,
                    'pixel_values': torch.randn(images, 1, 3, 32, 32, generator=generator)})
    return out


def _loss_and_grads(model, batch):
    model.zero_grad()
    inputs = {k: v for k, v in batch.items() if k != 'sample_lengths'}
    loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _per_sample_logits(model, batch, rows, lengths):
    """Each sample's logits, cut out of its row (packed) or its own row (unpacked)."""
    inputs = {k: v for k, v in batch.items() if k not in ('sample_lengths', 'labels')}
    with torch.no_grad():
        return packed_sample_logits(model(**inputs).logits, rows, lengths)


def test_packed_batch_gives_the_unpacked_loss_and_gradients(tiny):
    model, family = tiny
    samples = _samples(model, LAYOUTS)
    packed = family.collator('train', pack_tokens=20)(samples)
    unpacked = family.collator('train')(samples)
    assert packed['input_ids'].shape[0] < unpacked['input_ids'].shape[0]  # samples really share rows
    loss_packed, grads_packed = _loss_and_grads(model, packed)
    loss_unpacked, grads_unpacked = _loss_and_grads(model, unpacked)
    # both are the mean over the batch's 10 label tokens
    assert torch.allclose(loss_packed, loss_unpacked, rtol=1e-5), (loss_packed, loss_unpacked)
    assert grads_packed.keys() == grads_unpacked.keys()
    assert any(n.startswith('perceiver') for n in grads_packed) and any('gated_cross_attn' in n for n in grads_packed)
    for name, grad in grads_unpacked.items():
        assert torch.allclose(grads_packed[name], grad, rtol=1e-4, atol=1e-6), name


def test_changing_one_packed_sample_leaves_the_others_unchanged(tiny):
    model, family = tiny
    model.eval()
    try:
        samples = _samples(model, LAYOUTS)
        lengths = [len(s['input_ids']) for s in samples]
        collate = family.collator('train', pack_tokens=20)
        rows = pack_rows(lengths, 20)
        assert any(len(row) > 1 and row.index(2) > 0 for row in rows if 2 in row)  # sample 2 follows another one
        before = _per_sample_logits(model, collate(samples), rows, lengths)
        for k in range(len(samples)):  # a changed image reaches its own sample and no other
            changed = [dict(s) for s in samples]
            changed[k]['pixel_values'] = samples[k]['pixel_values'] + 1.0
            after = _per_sample_logits(model, collate(changed), rows, lengths)
            assert not torch.allclose(after[k], before[k], atol=1e-4), k
            for i in range(len(samples)):
                if i != k:
                    assert torch.allclose(after[i], before[i], atol=1e-5), (k, i)
        single = family.collator('train')
        for i, s in enumerate(samples):  # and each sample sees exactly what it sees alone
            alone = _per_sample_logits(model, single([s]), [[0]], [lengths[i]])[0]
            assert torch.allclose(before[i], alone, atol=1e-5), i
    finally:
        model.train()


def test_a_rows_media_and_media_time(tiny):
    model, family = tiny
    samples = _samples(model, LAYOUTS)
    lengths = [len(s['input_ids']) for s in samples]
    rows = pack_rows(lengths, 20)
    batch = family.collator('train', pack_tokens=20)(samples)
    for r, row in enumerate(rows):
        media = torch.cat([samples[i]['pixel_values'] for i in row])
        assert torch.equal(batch['pixel_values'][r, :len(media)], media)
        assert not batch['pixel_values'][r, len(media):].any()  # padding media: zeros, never referenced
    # by hand: [BOS, img, a, b | BOS, c, d, img, e] with positions restarting at the bar
    ids = torch.tensor([[1, 9, 5, 5, 1, 6, 6, 9, 7]])
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4]])
    assert packed_text_time(ids, 9, positions).tolist() == [[0, 1, 1, 1, 0, 0, 0, 2, 2]]


def test_packing_needs_immediate_media_only(tiny):
    model, family = tiny
    samples = _samples(model, LAYOUTS)
    batch = family.collator('train', pack_tokens=20)(samples)
    inputs = {k: v for k, v in batch.items() if k != 'sample_lengths'}
    model.config.only_attend_immediate_media = False
    try:
        with pytest.raises(ValueError, match='only_attend_immediate_media=True'):
            model(**inputs)
    finally:
        model.config.only_attend_immediate_media = True


def test_the_family_collator_packs(tiny):
    _, family = tiny
    collate = family.collator('train', pack_tokens=512)
    assert type(collate).__name__ == 'FlamingoCollator' and collate.pack_tokens == 512


@pytest.mark.parametrize('module', ['mllm.dataset.flamingo_conversation', 'mllm.engine.collator', 'mllm.engine'])
def test_the_renderer_and_the_collator_import_first_in_a_fresh_interpreter(module):
    """They once formed a cycle (engine/__init__ imported the trainer, which imports the models and their
    renderers), so importing the Flamingo renderer before anything else failed."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, '-c', f'import {module}'], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
