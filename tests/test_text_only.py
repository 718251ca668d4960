"""Samples with zero images train as text: no image tokens, no pixel values, and a batch may mix both kinds."""
import pytest
import torch

from mllm.dataset.root import IGNORE_INDEX
from mllm.dataset.validation import InvalidSampleError
from mllm.engine import Collator
from tests.test_conv_dataset import make, rec_item


def text_item(question='What is two plus two?', answer='four'):
    return {'image': [], 'conversations': [{'from': 'human', 'value': question}, {'from': 'gpt', 'value': answer}]}


def test_text_only_sample_has_no_image_tokens(preprocessor):
    tok = preprocessor['text']
    for mode in ('train', 'eval'):
        sample = make(preprocessor, [text_item()], mode=mode)[0]
        assert sample['pixel_values'] is None
        assert tok.convert_tokens_to_ids('<image>') not in sample['input_ids'].tolist()
    train = make(preprocessor, [text_item()])[0]
    assert tok.decode(train['labels'][train['labels'] != IGNORE_INDEX]) == ' four</s>'
    assert tok.decode(train['input_ids'], skip_special_tokens=False).startswith(
        '<s>A chat between a curious user')


def test_boxes_without_an_image_are_refused(preprocessor):
    item = text_item(answer='Answer: <boxes> .')
    item['conversations'][1]['boxes_seq'] = [[0]]
    item['target'] = {'boxes': [[0, 0, 1, 1]]}
    with pytest.raises(InvalidSampleError, match='no image to refer to'):
        make(preprocessor, [item])[0]


def test_mixed_batch_collates_only_the_images_present(preprocessor):
    ds = make(preprocessor, [text_item(), rec_item(), text_item('Say hi.', 'hi')])
    batch = Collator(preprocessor['text'].pad_token_id, 'right')([ds[0], ds[1], ds[2]])
    assert batch['pixel_values'].shape[0] == 1
    text_only = Collator(preprocessor['text'].pad_token_id, 'right')([ds[0], ds[2]])
    assert 'pixel_values' not in text_only


def test_mixed_batch_loss_equals_the_samples_computed_apart(tiny):
    model, pre = tiny
    model.eval()
    ds = make(pre, [text_item(), rec_item()])
    collate = Collator(pre['text'].pad_token_id, 'right')
    samples = [ds[0], ds[1]]
    with torch.no_grad():
        mixed = model(**collate(samples)).loss
        apart = [model(**collate([s])).loss for s in samples]
    # transformers averages over every label token of the batch: weight each sample by its tokens
    counts = [int((s['labels'][1:] != IGNORE_INDEX).sum()) for s in samples]  # labels shift by one
    expected = sum(loss * n for loss, n in zip(apart, counts)) / sum(counts)
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-6)
