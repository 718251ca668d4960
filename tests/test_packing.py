"""Multimodal packing (Collator(pack_tokens=...), LLaVA family; the Flamingo family: test_flamingo_packing.py): samples
share rows without seeing each other.

- the loss and every gradient of a packed batch equal those of the same samples padded one per row (the loss is
  the mean over the batch's label tokens in both cases, so the comparison is exact up to float order);
- changing one packed sample (its image, its text) leaves the logits of the others unchanged;
- images stay in token order, positions restart per sample, no label crosses a border;
- rows are filled first fit, longest first, within the budget.
"""
import pytest
import torch

from mllm.dataset.root import IGNORE_INDEX
from mllm.engine.collator import Collator, pack_rows
from mllm.models import build_model
from tests.helpers import packed_sample_logits


@pytest.fixture(scope='module')
def tiny():
    model, family = build_model({'type': 'llava', 'model_name_or_path': 'tiny'})
    return model, family


def _samples(family, texts, seed=0):
    """Rendered-like samples: BOS, the image tokens, a prompt (no labels), an answer (labels) per text."""
    n = family.num_image_tokens
    image = family.tokenizer.convert_tokens_to_ids(family.image_token)
    size = family.image_processor.crop_size['height']
    generator = torch.Generator().manual_seed(seed)
    out = []
    for prompt, answer in texts:
        ids = torch.tensor([1, *[image] * n, *prompt, *answer])
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-len(answer):] = torch.tensor(answer)
        out.append({'input_ids': ids, 'labels': labels,
                    'pixel_values': torch.randn(1, 3, size, size, generator=generator)})
    return out


TEXTS = [([10, 11, 12], [20, 21]), ([13, 14], [22, 23, 24, 25]), ([15], [26]), ([16, 17, 18, 19], [27, 28, 29])]


def _model_inputs(batch):
    """What MllmTrainer.training_step hands the model: the packed batch's `sample_lengths` are bookkeeping."""
    return {k: v for k, v in batch.items() if k != 'sample_lengths'}


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**_model_inputs(batch)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_batch_gives_the_unpacked_loss_and_gradients(tiny):
    model, family = tiny
    model.train()
    samples = _samples(family, TEXTS)
    n = family.num_image_tokens
    budget = 2 * (n + 9)  # two samples a row
    padded = Collator(family.tokenizer.pad_token_id, 'right')(samples)
    packed = Collator(family.tokenizer.pad_token_id, 'right', pack_tokens=budget)(samples)
    assert packed['input_ids'].shape[0] == 2 < padded['input_ids'].shape[0] == 4
    assert 'attention_mask' not in packed and packed['use_cache'] is False
    lengths = [len(s['input_ids']) for s in samples]
    order = [i for row in pack_rows(lengths, budget) for i in row]  # row-major: the token counts' order
    assert packed['sample_lengths'].tolist() == [lengths[i] for i in order]
    loss_padded, grads_padded = _loss_and_grads(model, padded)
    loss_packed, grads_packed = _loss_and_grads(model, packed)
    assert torch.allclose(loss_packed, loss_padded, rtol=1e-6, atol=1e-7)
    assert grads_packed.keys() == grads_padded.keys() and any('multi_modal_projector' in k for k in grads_packed)
    for name, grad in grads_padded.items():
        assert torch.allclose(grads_packed[name], grad, rtol=1e-4, atol=1e-6), name


def _per_sample_logits(model, batch, rows, lengths):
    with torch.no_grad():
        return packed_sample_logits(model(**_model_inputs(batch)).logits, rows, lengths)


def test_changing_one_packed_sample_leaves_the_others_unchanged(tiny):
    model, family = tiny
    model.eval()
    budget = 10 ** 6  # every sample in one row: the hardest case for leaks
    collate = Collator(family.tokenizer.pad_token_id, 'right', pack_tokens=budget)
    samples = _samples(family, TEXTS)
    lengths = [len(s['input_ids']) for s in samples]
    rows = pack_rows(lengths, budget)
    assert len(rows) == 1
    before = _per_sample_logits(model, collate(samples), rows, lengths)
    changed = [dict(s) for s in samples]
    changed[1]['pixel_values'] = changed[1]['pixel_values'] + 1.0  # another image for sample 1 ...
    changed[1]['input_ids'] = changed[1]['input_ids'].clone()
    changed[1]['input_ids'][-3] = 30  # ... and another answer token
    after = _per_sample_logits(model, collate(changed), rows, lengths)
    assert not torch.allclose(after[1], before[1])  # the change reached its own sample
    for i in (0, 2, 3):
        assert torch.allclose(after[i], before[i], atol=1e-5), i
    single = Collator(family.tokenizer.pad_token_id, 'right')
    alone = [_per_sample_logits(model, single([s]), [[0]], [len(s['input_ids'])])[0] for s in samples]
    for i in range(4):  # and each sample sees exactly what it sees alone
        assert torch.allclose(before[i], alone[i], atol=1e-5), i


def test_rows_positions_images_and_borders(tiny):
    _, family = tiny
    samples = _samples(family, TEXTS)
    lengths = [len(s['input_ids']) for s in samples]
    assert lengths == [70, 71, 67, 72]  # 64 image tokens + BOS + prompt + answer
    budget = lengths[0] + lengths[2]  # 137
    batch = Collator(family.tokenizer.pad_token_id, 'right', pack_tokens=budget)(samples)
    rows = pack_rows(lengths, budget)
    # longest first: 3 (72) opens a row (65 left), 1 (71) and 0 (70) do not fit there and open their own
    # (66, 67 left); 2 (67) fits only next to 0
    assert rows == [[0, 2], [1], [3]]
    assert batch['input_ids'].shape == (3, max(lengths[0] + lengths[2], lengths[1], lengths[3]))
    row0 = batch['position_ids'][0]
    assert row0[:lengths[0]].tolist() == list(range(lengths[0]))
    assert row0[lengths[0]:lengths[0] + lengths[2]].tolist() == list(range(lengths[2]))
    order = [0, 2, 1, 3]  # row-major sample order: the order of the image tokens in the batch
    assert torch.equal(batch['pixel_values'], torch.cat([samples[i]['pixel_values'] for i in order]))
    assert (batch['labels'][0, lengths[0]] == IGNORE_INDEX)  # sample 2's first token carries no label
    assert pack_rows([5, 9, 3, 4], 9) == [[0, 3], [1], [2]]  # 9 fills a row; 5 opens one, 4 fills it; 3 alone
    assert pack_rows([12], 4) == [[0]]  # longer than the budget: a row of its own


def test_a_sample_that_starts_with_a_label_is_refused(tiny):
    _, family = tiny
    samples = _samples(family, TEXTS[:2])
    samples[1]['labels'][0] = 5
    with pytest.raises(ValueError, match='sample 1 of the batch starts with a label'):
        Collator(family.tokenizer.pad_token_id, 'right', pack_tokens=10 ** 6)(samples)

