"""Tests for SingleImageConvDataset: label masking, eval prompts, image tokens, box text and bad samples."""
import pytest
import torch
from PIL import Image

from mllm.dataset.root import IGNORE_INDEX
from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.dataset.utils.transform import Expand2square
from mllm.dataset.validation import InvalidSampleError
from tests.helpers import ItemList, label_runs

SQUARE = dict(type='Expand2square')
BOX_TEXT = '[0.104,0.219,0.521,0.583]'  # [10,5,50,40] on 96x64, padded to 96x96 (dy=16)


def rec_item(size=(96, 64), box=(10, 5, 50, 40), question='<image> Where is the red circle?', source='rec.jsonl:7'):
    item = {
        'image': Image.new('RGB', size, (200, 30, 30)),
        'target': {'boxes': [list(box)]},
        'conversations': [{'from': 'human', 'value': question},
                          {'from': 'gpt', 'value': 'Answer: <boxes> .', 'boxes_seq': [[0]]}],
    }
    if source:
        item['source'] = source
    return item


def two_round_item():
    item = rec_item()
    item['conversations'] += [{'from': 'human', 'value': 'And where is it again?'},
                              {'from': 'gpt', 'value': 'It is <boxes> .', 'boxes_seq': [[0]]}]
    return item


def make(preprocessor, items, **kwargs):
    kwargs.setdefault('transform', SQUARE)
    return SingleImageConvDataset(ItemList(items), preprocessor, name='Raw', **kwargs)


def test_train_labels_single_turn(preprocessor):
    tok = preprocessor['text']
    sample = make(preprocessor, [rec_item()])[0]
    ids, labels = sample['input_ids'], sample['labels']
    assert ids.dtype == torch.long and labels.shape == ids.shape
    kept = labels != IGNORE_INDEX
    assert torch.equal(labels[kept], ids[kept])
    assert tok.decode(labels[kept]) == f' Answer: {BOX_TEXT} .</s>'
    runs = label_runs(labels)
    assert len(runs) == 1 and runs[0][-1] == len(ids) - 1  # the answer closes the sequence
    assert ids[-1].item() == tok.eos_token_id
    assert tok.decode(ids[~kept]).endswith(' Where is the red circle? ASSISTANT:')


def test_train_labels_two_rounds(preprocessor):
    tok = preprocessor['text']
    sample = make(preprocessor, [two_round_item()])[0]
    ids, labels = sample['input_ids'], sample['labels']
    runs = label_runs(labels)
    assert [tok.decode(ids[r]) for r in runs] == [f' Answer: {BOX_TEXT} .</s>', f' It is {BOX_TEXT} .</s>']
    assert tok.decode(labels[labels != IGNORE_INDEX]) == f' Answer: {BOX_TEXT} .</s> It is {BOX_TEXT} .</s>'
    between = tok.decode(ids[runs[0][-1] + 1:runs[1][0]])
    assert between == 'USER: And where is it again? ASSISTANT:'  # second human turn fully masked
    assert all(v == IGNORE_INDEX for v in labels[:runs[0][0]].tolist())


def test_eval_prompt_and_reference(preprocessor):
    tok = preprocessor['text']
    sample = make(preprocessor, [rec_item()], mode='eval')[0]
    assert tok.decode(sample['input_ids']).endswith('USER: ' + '<image>' * 64 + ' Where is the red circle? ASSISTANT:')
    assert tok.decode(sample['labels']) == f'Answer: {BOX_TEXT} .'
    assert sample['pixel_values'].shape == (1, 3, 64, 64)


def test_eval_two_rounds_keeps_first_answer_in_prompt(preprocessor):
    tok = preprocessor['text']
    sample = make(preprocessor, [two_round_item()], mode='eval')[0]
    prompt = tok.decode(sample['input_ids'])
    assert prompt.endswith(f'ASSISTANT: Answer: {BOX_TEXT} .</s>USER: And where is it again? ASSISTANT:')
    assert tok.decode(sample['labels']) == f'It is {BOX_TEXT} .'


@pytest.mark.parametrize('item_fn', [rec_item, two_round_item])
def test_eval_prompt_is_prefix_of_train_ids(preprocessor, item_fn):
    train = make(preprocessor, [item_fn()])[0]['input_ids']
    prompt = make(preprocessor, [item_fn()], mode='eval')[0]['input_ids']
    assert len(prompt) < len(train)
    assert torch.equal(train[:len(prompt)], prompt)


def test_image_tokens_and_pixel_values(preprocessor):
    image_id = preprocessor['text'].convert_tokens_to_ids('<image>')
    item = rec_item()
    sample = make(preprocessor, [item])[0]
    n = preprocessor['num_image_tokens']
    assert n == 64
    positions = (sample['input_ids'] == image_id).nonzero().flatten().tolist()
    assert len(positions) == n
    assert positions == list(range(positions[0], positions[0] + n))  # one contiguous block
    assert all(sample['labels'][p].item() == IGNORE_INDEX for p in positions)
    assert sample['pixel_values'].shape == (1, 3, 64, 64)
    expected = preprocessor['image'](images=[Expand2square()(item['image'])[0]], return_tensors='pt')['pixel_values']
    assert torch.allclose(sample['pixel_values'], expected)


@pytest.mark.parametrize('size, box, text', [
    ((96, 64), (10, 5, 50, 40), BOX_TEXT),
    ((64, 96), (5, 10, 40, 50), '[0.219,0.104,0.583,0.521]'),
    ((80, 80), (20, 20, 60, 70), '[0.250,0.250,0.750,0.875]'),
    ((96, 64), (0, 0, 96, 64), '[0.000,0.167,1.000,0.833]'),
])
def test_box_numbers_after_expand_to_square(preprocessor, size, box, text):
    sample = make(preprocessor, [rec_item(size=size, box=box)], mode='eval')[0]
    assert preprocessor['text'].decode(sample['labels']) == f'Answer: {text} .'


def test_box_numbers_without_transform(preprocessor):
    sample = make(preprocessor, [rec_item()], mode='eval', transform=None)[0]
    assert preprocessor['text'].decode(sample['labels']) == 'Answer: [0.104,0.078,0.521,0.625] .'


def test_max_length_cutting_image_tokens_raises(preprocessor):
    ds = make(preprocessor, [rec_item(source='rec.jsonl:7')], max_length=50)
    with pytest.raises(InvalidSampleError) as info:
        ds[0]
    message = str(info.value)
    assert 'Raw[0]' in message and 'rec.jsonl:7' in message and 'max_length=50' in message


def test_truncation_keeps_image_tokens_and_partial_answer(preprocessor):
    full = make(preprocessor, [rec_item()])[0]
    n = len(full['input_ids'])
    cut = make(preprocessor, [rec_item()], max_length=n - 3)[0]
    assert torch.equal(cut['input_ids'], full['input_ids'][:n - 3])
    assert torch.equal(cut['labels'], full['labels'][:n - 3])
    assert (cut['labels'] != IGNORE_INDEX).any()


def test_eval_prompt_longer_than_max_length_raises(preprocessor):
    full = make(preprocessor, [rec_item()], mode='eval')[0]
    ds = make(preprocessor, [rec_item()], mode='eval', max_length=len(full['input_ids']) - 1)
    with pytest.raises(InvalidSampleError, match=r'Raw\[0\]'):
        ds[0]


def plain_item(human, gpt, source=None):
    item = {'image': Image.new('RGB', (32, 32)), 'target': {},
            'conversations': [{'from': 'human', 'value': human}, {'from': 'gpt', 'value': gpt}]}
    if source:
        item['source'] = source
    return item


def test_misaligned_sample_is_skipped(preprocessor):
    tok = preprocessor['text']
    # 'ima' + 'ge' is tokenised as the single word token '▁image': prompt and answer share a token.
    pieces = tok.convert_ids_to_tokens(tok('<image> image\n', add_special_tokens=False)['input_ids'])
    assert pieces == ['<image>', '\u2581image', '\n']
    items = [plain_item('<image> ima', 'ge', source='caps.jsonl:1'), plain_item('<image>', 'a red circle')]
    # the plain format with its human text kept, so that prompt and answer meet inside one word
    ds = make(preprocessor, items, conv_template='plain', conv_overrides=dict(user_text=True), transform=None)
    sample = ds[0]
    assert torch.equal(sample['input_ids'], ds.process(1)['input_ids'])
    assert len(ds.skipped) == 1
    assert 'Raw[0]' in ds.skipped[0] and 'caps.jsonl:1' in ds.skipped[0]
    assert tok.decode(sample['labels'][sample['labels'] != IGNORE_INDEX]) == 'a red circle\n'


def test_all_answer_tokens_truncated_is_skipped(preprocessor):
    long_item = rec_item(question='<image> ' + 'where is the red circle ' * 20 + '?')
    short_item = rec_item()
    n_short = len(make(preprocessor, [short_item])[0]['input_ids'])
    ds = make(preprocessor, [long_item, short_item], max_length=n_short)
    sample = ds[0]
    assert len(sample['input_ids']) == n_short
    assert len(ds.skipped) == 1 and 'Raw[0]' in ds.skipped[0]


def test_missing_image_placeholder_is_prepended(preprocessor):
    tok = preprocessor['text']
    image_id = tok.convert_tokens_to_ids('<image>')
    with_ph = make(preprocessor, [rec_item(question='<image> Where is the red circle?')])[0]
    without = make(preprocessor, [rec_item(question='Where is the red circle?')])[0]
    assert (without['input_ids'] == image_id).sum().item() == preprocessor['num_image_tokens']
    assert torch.equal(with_ph['input_ids'], without['input_ids'])
    assert torch.equal(with_ph['labels'], without['labels'])


def test_too_many_image_placeholders_raise(preprocessor):
    ds = make(preprocessor, [rec_item(question='<image> <image> Where is the red circle?')])
    with pytest.raises(InvalidSampleError, match='2 <image> placeholders for 1 images'):
        ds[0]


def test_bad_mode_and_template(preprocessor):
    with pytest.raises(ValueError, match='mode'):
        SingleImageConvDataset(ItemList([]), preprocessor, mode='test')
    with pytest.raises(KeyError, match='vicuna_v2'):
        SingleImageConvDataset(ItemList([]), preprocessor, conv_template='vicuna_v2')


def test_points_and_boxes_in_one_turn(preprocessor):
    item = rec_item(size=(96, 64), box=(0, 0, 48, 32))
    item['target']['points'] = [[48, 32], [96, 0]]
    item['conversations'][1] = {'from': 'gpt', 'value': 'Box <boxes> , points <points> .',
                                'boxes_seq': [[0]], 'points_seq': [[0, 1]]}
    sample = make(preprocessor, [item], mode='eval')[0]
    assert preprocessor['text'].decode(sample['labels']) == \
        'Box [0.000,0.167,0.500,0.500] , points [0.500,0.500;1.000,0.167] .'


def in_context_item():
    image = Image.new('RGB', (64, 64), (10, 200, 30))
    return {'image': [image, image.copy()], 'conversations': [
        {'from': 'human', 'value': '<image> What is it?', 'in_context': True},
        {'from': 'gpt', 'value': 'a circle', 'in_context': True},
        {'from': 'human', 'value': '<image> And this?'},
        {'from': 'gpt', 'value': 'a square'}]}


@pytest.mark.parametrize('in_context_loss', [False, True])
def test_in_context_answers_carry_loss_only_when_asked(preprocessor, in_context_loss):
    tok = preprocessor['text']
    ds = make(preprocessor, [in_context_item()], transform=None, in_context_loss=in_context_loss)
    sample = ds[0]
    answers = [tok.decode(sample['input_ids'][run]) for run in label_runs(sample['labels'])]
    assert answers == ([' a circle</s>', ' a square</s>'] if in_context_loss else [' a square</s>'])
    assert sample['pixel_values'].shape[0] == 2  # each example keeps its own image


def test_otter_template_renders_chunks(preprocessor):
    from mllm.dataset.process_function.conv_template import get_conv_template

    text, spans, _ = get_conv_template('otter').render(in_context_item()['conversations'])
    assert text == ('<image>User: What is it? GPT:<answer> a circle<|endofchunk|>'
                    '<image>User: And this? GPT:<answer> a square<|endofchunk|>')
    assert [text[a:b] for a, b in spans] == ['a circle<|endofchunk|>', 'a square<|endofchunk|>']
    loss_free = [dict(t, loss=False) if t.get('in_context') else t for t in in_context_item()['conversations']]
    _, spans, _ = get_conv_template('otter').render(loss_free)
    assert len(spans) == 1


def test_boxes_refer_to_the_image_they_were_drawn_on(preprocessor):
    # image 0: 96x64 (padded to 96x96, dy=16); image 1: 40x80 (padded to 80x80, dx=20)
    item = {'image': [Image.new('RGB', (96, 64)), Image.new('RGB', (40, 80))],
            'target': {'boxes': [[10, 5, 50, 40], [0, 0, 40, 40]], 'boxes_image': [0, 1]},
            'conversations': [{'from': 'human', 'value': '<image> <image> Where?'},
                              {'from': 'gpt', 'value': '<boxes> and <boxes>', 'boxes_seq': [[0], [1]]}]}
    sample = make(preprocessor, [item], mode='eval')[0]
    # box 1 by hand: [0+20, 0, 40+20, 40] / 80 = [0.25, 0, 0.75, 0.5]
    assert preprocessor['text'].decode(sample['labels']) == f'{BOX_TEXT} and [0.250,0.000,0.750,0.500]'
    bad = dict(item, target={'boxes': item['target']['boxes'], 'boxes_image': [0, 2]})
    with pytest.raises(InvalidSampleError, match=r"boxes_image'\]\[1\] = 2 is not the index of one of the item's 2"):
        make(preprocessor, [bad], mode='eval')[0]
    outside = dict(item, target={'boxes': [[10, 5, 50, 40], [0, 0, 60, 40]], 'boxes_image': [0, 1]})
    with pytest.raises(InvalidSampleError, match=r'box 1 \[0, 0, 60, 40\] lies outside the 40x80 image'):
        make(preprocessor, [outside], mode='eval')[0]


def test_openflamingo_prompt_formats():
    from mllm.dataset.process_function.conv_template import get_conv_template

    turns = [{'from': 'human', 'value': '<image> Describe the image.'}, {'from': 'gpt', 'value': 'A cat.'},
             {'from': 'human', 'value': '<image> What is it?'}, {'from': 'gpt', 'value': 'a dog'}]
    caption, spans, _ = get_conv_template('openflamingo_caption').render(turns)
    assert caption == '<image>Output: A cat.<|endofchunk|><image>Output: a dog<|endofchunk|>'
    assert [caption[a:b] for a, b in spans] == ['A cat.<|endofchunk|>', 'a dog<|endofchunk|>']
    vqa, _, reference = get_conv_template('openflamingo_vqa').render(turns, for_generation=True)
    assert vqa == ('<image>Question: Describe the image. Short answer: A cat.<|endofchunk|>'
                   '<image>Question: What is it? Short answer:')
    assert reference == 'a dog'
