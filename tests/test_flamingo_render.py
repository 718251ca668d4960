"""Canonical items rendered for Flamingo-style models: one media token per <image>, (T_img, F, C, H, W) pixels,
Otter's chunk format with loss only after <answer>, and zero-padded batches over media and frames."""
import copy

import pytest
import torch
from PIL import Image

from mllm.dataset.flamingo_conversation import FlamingoCollator, FlamingoConvDataset
from mllm.dataset.root import IGNORE_INDEX
from mllm.dataset.validation import InvalidSampleError
from tests.helpers import ItemList, label_runs


@pytest.fixture(scope='module')
def flamingo_pre(preprocessor):
    tok = copy.deepcopy(preprocessor['text'])
    tok.add_special_tokens({'additional_special_tokens': ['<image>', '<|endofchunk|>', '<answer>']})
    return dict(preprocessor, text=tok)


def solid(colour, size=(40, 30)):
    return Image.new('RGB', size, colour)


def episode(video=False):
    query_media = [solid((0, 0, 255)), solid((0, 255, 0)), solid((255, 0, 0))] if video else solid((0, 0, 255))
    return {'image': [solid((200, 10, 10)), query_media], 'conversations': [
        {'from': 'human', 'value': '<image>What is it?', 'in_context': True},
        {'from': 'gpt', 'value': 'a red card', 'in_context': True},
        {'from': 'human', 'value': '<image>And this?'},
        {'from': 'gpt', 'value': 'a blue card'}]}


def make(pre, items, **kwargs):
    return FlamingoConvDataset(ItemList(items), pre, conv_template='otter', name='Raw', **kwargs)


def test_otter_chunks_one_media_token_each_and_loss_after_answer(flamingo_pre):
    tok = flamingo_pre['text']
    sample = make(flamingo_pre, [episode()])[0]
    ids = sample['input_ids']
    assert tok.decode(ids, skip_special_tokens=False) == (
        '<s><image>User: What is it? GPT:<answer> a red card<|endofchunk|>'
        '<image>User: And this? GPT:<answer> a blue card<|endofchunk|>')
    assert int((ids == tok.convert_tokens_to_ids('<image>')).sum()) == 2  # one media token per image
    runs = label_runs(sample['labels'])
    assert [tok.decode(ids[r], skip_special_tokens=False) for r in runs] == [' a blue card<|endofchunk|>']
    assert sample['pixel_values'].shape == (2, 1, 3, 64, 64)
    # each media keeps its own pixels: red first, blue second (CLIP-normalised, so compare the channel order)
    red, blue = sample['pixel_values'][0, 0], sample['pixel_values'][1, 0]
    assert red[0].mean() > red[2].mean() and blue[2].mean() > blue[0].mean()
    both = make(flamingo_pre, [episode()], in_context_loss=True)[0]
    assert len(label_runs(both['labels'])) == 2


def test_generation_prompt_ends_with_the_answer_marker(flamingo_pre):
    tok = flamingo_pre['text']
    sample = make(flamingo_pre, [episode()], mode='eval')[0]
    assert tok.decode(sample['input_ids'], skip_special_tokens=False).endswith('<image>User: And this? GPT:<answer>')
    assert tok.decode(sample['labels']) == 'a blue card'
    ds = make(flamingo_pre, [episode()], mode='eval')
    assert ds.stop_token_ids == [tok.convert_tokens_to_ids('<|endofchunk|>')]


def test_video_media_is_frames_and_batches_pad_media_and_frames(flamingo_pre):
    video = make(flamingo_pre, [episode(video=True)])[0]
    assert video['pixel_values'].shape == (2, 3, 3, 64, 64)
    # the still image is padded to 3 frames by repeating its only frame
    assert torch.equal(video['pixel_values'][0, 0], video['pixel_values'][0, 2])
    text_only = make(flamingo_pre, [{'image': [], 'conversations': [{'from': 'human', 'value': 'Hi'},
                                                                    {'from': 'gpt', 'value': 'hello'}]}])[0]
    assert text_only['pixel_values'] is None
    single = dict(episode(), image=[solid((9, 9, 9))], conversations=episode()['conversations'][2:])
    one = make(flamingo_pre, [single])[0]
    batch = FlamingoCollator(flamingo_pre['text'].pad_token_id, 'right')([video, text_only, one])
    assert batch['pixel_values'].shape == (3, 2, 3, 3, 64, 64)
    assert torch.equal(batch['pixel_values'][0], video['pixel_values'])
    assert not batch['pixel_values'][1].any()  # text-only row: all padding
    assert torch.equal(batch['pixel_values'][2, 0, 0], one['pixel_values'][0, 0])
    assert not batch['pixel_values'][2, 1].any()  # one media only: the second is padding
    assert (batch['labels'][1] != IGNORE_INDEX).any()


def test_boxes_on_a_video_are_refused(flamingo_pre):
    item = episode(video=True)
    item['target'] = {'boxes': [[0, 0, 5, 5]], 'boxes_image': [1]}
    item['conversations'][3] = {'from': 'gpt', 'value': '<boxes>', 'boxes_seq': [[0]]}
    with pytest.raises(InvalidSampleError, match='video media'):
        make(flamingo_pre, [item])[0]
