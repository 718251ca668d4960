"""Multi-image episodes: EVERY image's features reach the model at its own place (one reference implementation
spliced only the last image of an episode). Checked on the tiny LLaVA through the real renderer and collator."""
import torch
from PIL import Image

from tests.helpers import ItemList

COLOURS = [(220, 20, 20), (20, 200, 40), (30, 60, 230)]


def episode(colours=COLOURS):
    images = [Image.new('RGB', (64, 64), c) for c in colours]
    images[0].putpixel((3, 3), (255, 255, 255))
    turns = []
    for k in range(len(images) - 1):
        turns += [{'from': 'human', 'value': '<image> What is this?', 'in_context': True},
                  {'from': 'gpt', 'value': f'thing {k}', 'in_context': True}]
    turns += [{'from': 'human', 'value': '<image> And this?'}, {'from': 'gpt', 'value': 'thing 0'}]
    return {'image': images, 'conversations': turns}


def forward(model, family, item):
    sample = family.render(ItemList([item]), 'train', name='episode')[0]
    batch = family.collator('train')([sample])
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return sample, batch, out


def test_each_image_is_spliced_at_its_own_tokens_in_order(tiny_llava):
    model, family = tiny_llava
    model.eval()
    sample, batch, out = forward(model, family, episode())
    image_id = model.config.image_token_index
    positions = (sample['input_ids'] == image_id).nonzero().flatten()
    n = family.num_image_tokens
    assert len(positions) == 3 * n and batch['pixel_values'].shape[0] == 3
    spliced = out.hidden_states[0][0, positions].reshape(3, n, -1)  # the LM's input embeddings at image tokens
    with torch.no_grad():
        for k in range(3):  # image k's own features, computed alone, fill the k-th block of image tokens
            # transformers 5: the projected features of each image are the output's pooler_output (a list)
            alone = model.model.get_image_features(pixel_values=batch['pixel_values'][k:k + 1]).pooler_output
            alone = torch.cat(list(alone)) if isinstance(alone, (list, tuple)) else alone
            torch.testing.assert_close(spliced[k], alone.reshape(n, -1), rtol=1e-5, atol=1e-5)


def test_perturbing_one_support_image_changes_the_query_logits(tiny_llava):
    model, family = tiny_llava
    model.eval()
    sample, _, base = forward(model, family, episode())
    _, _, other = forward(model, family, episode([(90, 90, 90), *COLOURS[1:]]))
    answer = (sample['labels'] != -100).nonzero().flatten()
    query_answer = answer[answer > (sample['input_ids'] == model.config.image_token_index).nonzero().max()]
    diff = (base.logits[0, query_answer - 1] - other.logits[0, query_answer - 1]).abs().max().item()
    assert diff > 1e-4  # the first support image still matters at the query's answer


def test_a_question_that_places_its_image_after_its_text_is_rendered_so(tiny_llava):
    model, family = tiny_llava
    item = episode()
    for turn in item['conversations'][0::2]:  # '<image> What is this?' -> 'What is this? <image>'
        turn['value'] = turn['value'].replace('<image> ', '') + ' <image>'
    ids = family.render(ItemList([item]), 'train', name='episode')[0]['input_ids']
    n = family.num_image_tokens
    positions = (ids == model.config.image_token_index).nonzero().flatten()
    assert len(positions) == 3 * n
    starts = [int(p) for k, p in enumerate(positions) if k % n == 0]
    assert [int(positions[k * n + n - 1]) - s for k, s in enumerate(starts)] == [n - 1] * 3  # contiguous blocks
    text = lambda a, b: family.tokenizer.decode(ids[a:b], skip_special_tokens=True)  # noqa: E731
    assert text(0, starts[0]).rstrip().endswith('What is this?')
    between = text(starts[0] + n, starts[1])
    assert 'thing 0' in between and between.rstrip().endswith('What is this?')
    assert text(starts[2] - 8, starts[2]).rstrip().endswith('And this?')
