"""Tests for the batch Collator: right padding for training, left padding for generation."""
import pytest
import torch

from mllm.engine.collator import Collator

PAD = 3


def sample(ids, labels=None, n_images=1, fill=0.0):
    s = {'input_ids': torch.tensor(ids, dtype=torch.long),
         'pixel_values': torch.full((n_images, 3, 4, 4), fill)}
    if labels is not None:
        s['labels'] = torch.tensor(labels, dtype=torch.long)
    return s


def batch_samples():
    return [sample([1, 10, 11, 12, 2], [-100, -100, 11, 12, 2], fill=1.0),
            sample([1, 20, 2], [-100, 20, 2], fill=2.0),
            sample([1, 30, 31, 2], [-100, -100, 31, 2], n_images=2, fill=3.0)]


def test_right_padding():
    batch = Collator(pad_token_id=PAD, padding_side='right')(batch_samples())
    assert batch['input_ids'].tolist() == [[1, 10, 11, 12, 2], [1, 20, 2, PAD, PAD], [1, 30, 31, 2, PAD]]
    assert batch['attention_mask'].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert batch['labels'].tolist() == [[-100, -100, 11, 12, 2], [-100, 20, 2, -100, -100],
                                        [-100, -100, 31, 2, -100]]
    assert batch['input_ids'].dtype == torch.long and batch['labels'].dtype == torch.long


def test_left_padding():
    batch = Collator(pad_token_id=PAD, padding_side='left')(batch_samples())
    ids, mask = batch['input_ids'], batch['attention_mask']
    assert ids.tolist() == [[1, 10, 11, 12, 2], [PAD, PAD, 1, 20, 2], [PAD, 1, 30, 31, 2]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]
    assert mask[:, -1].tolist() == [1, 1, 1]  # every prompt ends at the last column
    assert (ids[:, -1] != PAD).all()
    # reference answers stay right-padded (they are only decoded)
    assert batch['labels'].tolist() == [[-100, -100, 11, 12, 2], [-100, 20, 2, -100, -100],
                                        [-100, -100, 31, 2, -100]]


def test_pixel_values_concatenated_in_order():
    batch = Collator(pad_token_id=PAD)(batch_samples())
    pv = batch['pixel_values']
    assert pv.shape == (4, 3, 4, 4)
    assert [pv[k, 0, 0, 0].item() for k in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_no_labels_and_equal_lengths():
    samples = [sample([1, 5, 2]), sample([1, 6, 2])]
    for side in ('left', 'right'):
        batch = Collator(pad_token_id=PAD, padding_side=side)(samples)
        assert 'labels' not in batch
        assert batch['input_ids'].tolist() == [[1, 5, 2], [1, 6, 2]]
        assert batch['attention_mask'].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_bad_padding_side():
    with pytest.raises(ValueError, match='padding_side'):
        Collator(pad_token_id=PAD, padding_side='middle')


def test_collates_real_dataset_samples(preprocessor):
    from PIL import Image

    from mllm.dataset.single_image_conversation import SingleImageConvDataset

    class Raw(list):
        pass

    def item(q):
        return {'image': Image.new('RGB', (40, 30)), 'target': {'boxes': [[1, 2, 30, 20]]},
                'conversations': [{'from': 'human', 'value': '<image> ' + q},
                                  {'from': 'gpt', 'value': 'Answer: <boxes> .', 'boxes_seq': [[0]]}]}

    tok = preprocessor['text']
    ds = SingleImageConvDataset(Raw([item('Where is it?'), item('Find the red circle in the picture please.')]),
                                preprocessor, mode='eval', transform=dict(type='Expand2square'))
    samples = [ds[0], ds[1]]
    batch = Collator(pad_token_id=tok.pad_token_id, padding_side='left')(samples)
    assert batch['pixel_values'].shape == (2, 3, 64, 64)
    short = len(samples[0]['input_ids'])
    width = batch['input_ids'].shape[1]
    assert width == len(samples[1]['input_ids']) > short
    assert torch.equal(batch['input_ids'][0, width - short:], samples[0]['input_ids'])
    assert (batch['input_ids'][0, :width - short] == tok.pad_token_id).all()
    assert tok.decode(batch['input_ids'][0, batch['attention_mask'][0].bool()]).endswith('ASSISTANT:')


def test_trim_logits_keeps_the_loss_and_cuts_the_logits(tiny):
    """Training batches ask only for the logits of the answer region; the loss is the same."""
    model, pre = tiny
    n = pre['num_image_tokens']
    torch.manual_seed(0)
    samples = []
    for k in range(4):
        length = n + 12 + 3 * k
        ids = torch.randint(10, 500, (length,))
        ids[1:1 + n] = pre['text'].convert_tokens_to_ids('<image>')
        labels = torch.full((length,), -100)
        labels[-5 - k:] = ids[-5 - k:]
        samples.append({'input_ids': ids, 'labels': labels, 'pixel_values': torch.randn(1, 3, 64, 64)})
    # a second answer earlier in sample 0 (multi-turn): its positions are kept too, the prompt between is not
    samples[0]['labels'][n + 2:n + 4] = samples[0]['input_ids'][n + 2:n + 4]
    full = Collator(pre['text'].pad_token_id, 'right')(samples)
    trimmed = Collator(pre['text'].pad_token_id, 'right', trim_logits=True)(samples)
    keep = trimmed['logits_to_keep']
    assert keep.dtype == torch.bool and keep.shape == full['labels'].shape
    # by hand: keep (row, c) exactly when the label at c + 1 is set
    for row in range(4):
        for c in range(keep.shape[1]):
            wanted = c + 1 < keep.shape[1] and int(full['labels'][row, c + 1]) != -100
            assert bool(keep[row, c]) == wanted, (row, c)
    assert int(keep.sum()) == int((full['labels'] != -100).sum()) == len(trimmed['shift_labels'])
    assert torch.equal(trimmed['labels'], full['labels'])
    model.eval()
    with torch.no_grad():
        loss_full = model(**full).loss
        out = model(**trimmed)
        logits_full = model(**full).logits
    assert out.logits.shape[0] == int(keep.sum())  # one row per kept position
    assert torch.allclose(out.logits, logits_full[keep], atol=1e-5)
    assert torch.allclose(out.loss, loss_full, atol=1e-6)


def test_trim_logits_is_a_no_op_for_generation_batches():
    sample = {'input_ids': torch.tensor([1, 5, 6]), 'labels': torch.tensor([7, 8]),
              'pixel_values': torch.zeros(1, 3, 64, 64)}
    batch = Collator(3, 'left', trim_logits=True)([sample])
    assert 'logits_to_keep' not in batch and batch['labels'].tolist() == [[7, 8]]


def test_trim_logits_keeps_the_flamingo_loss():
    """The Flamingo family passes the kept positions and their targets on to its language model."""
    from mllm.models import build_model
    from tests.helpers import ItemList
    from tests.test_flamingo_render import episode

    model, family = build_model({'type': 'openflamingo', 'model_name_or_path': 'tiny'})
    model.eval()
    samples = list(family.render(ItemList([episode(), episode()]), 'train', name='episodes'))
    full = family.collator('train')(samples)
    trimmed = family.collator('train', trim_logits=True)(samples)
    assert int(trimmed['logits_to_keep'].sum()) == int((full['labels'] != -100).sum()) > 0
    with torch.no_grad():
        assert torch.allclose(model(**trimmed).loss, model(**full).loss, atol=1e-6)
