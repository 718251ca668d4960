"""LCL episodes (ISEKAI and ImageNet-style training episodes) rendered for the Flamingo families in the templates of
the shipped ISEKAI evaluations (OpenFlamingo: openflamingo_vqa, Otter: otter): one media token per image, 2K+1 of
them in the order of the episode's plan (support as shown, query last), one pixel slot per image in that order,
loss on the query's answer only (every answer with in_context_loss), and an evaluation prompt that ends exactly
where the query's answer starts. Expectations are derived from the episode plan and the files, not the renderer."""
import os

import pytest
import torch
from mmengine.config import Config

from mllm.dataset.multi_image_dataset.episodes import EPISODE_PHRASES, LABEL
from mllm.dataset.multi_image_dataset.isekai import ISEKAIDataset
from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset
from mllm.dataset.root import IGNORE_INDEX
from mllm.dataset.utils.io import read_image
from mllm.demo.isekai_synth import generate_isekai_synth
from mllm.models import build_model
from tests.helpers import label_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# family -> (tiny model base, the full-size ISEKAI evaluation whose template the family renders with)
FAMILIES = {'otter': ('otter_tiny.py', 'otter_9b_isekai_eval.py'),
            'openflamingo': ('openflamingo_tiny.py', 'openflamingo_9b_isekai_eval.py')}
SHOT = 3


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp('isekai_synth_episodes')
    generate_isekai_synth(str(root), num_seen=3, num_unseen=2, images_per_concept=2 * SHOT, queries_per_concept=1,
                          image_size=24, seed=0)
    return root


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def flamingo(request):
    model_base, evaluation = FAMILIES[request.param]
    _, family = build_model(Config.fromfile(os.path.join(REPO, 'config', '_base_', 'model', model_base)).model_args)
    template = Config.fromfile(os.path.join(REPO, 'config', evaluation)).model_args.conv_args.conv_template
    return request.param, family, template


def raw_datasets(root):
    return {'isekai': ISEKAIDataset(str(root / 'isekai_unseen.json'), str(root / 'images'), shot=SHOT, way=2),
            'lcl_train': LCLEpisodeDataset(str(root / 'train_pairs.jsonl'), str(root / 'images'), policy='2way',
                                           shot=SHOT, max_shot=SHOT, num_episodes=2, seed=0)}


def render(flamingo, raw, mode, **kwargs):
    _, family, template = flamingo
    return family.render(raw, mode, 'episode', conv_template=template, max_length=4096, **kwargs)


def answer(name):
    return EPISODE_PHRASES['answer'].replace(LABEL, name)


def segments(ids, media_id):
    """The token ids after each media token up to the next one (the exchange of that image)."""
    starts = [t for t, v in enumerate(ids.tolist()) if v == media_id]
    return starts, [ids[s + 1:e] for s, e in zip(starts, [*starts[1:], len(ids)])]


@pytest.mark.parametrize('kind', ['isekai', 'lcl_train'])
def test_an_episode_has_one_media_token_and_one_pixel_slot_per_image_in_plan_order(flamingo, synth, kind):
    name, family, template = flamingo
    tok = family.tokenizer
    raw = raw_datasets(synth)[kind]
    media_id = tok.convert_tokens_to_ids('<image>')
    for index in range(2):
        plan = raw.episode(index)
        paths = [p for p, _ in plan.support] + [plan.query]
        shown = [n for _, n in plan.support] + [plan.answer]
        assert len(paths) == 2 * SHOT + 1
        sample = render(flamingo, raw, 'train')[index]
        starts, parts = segments(sample['input_ids'], media_id)
        assert len(starts) == 2 * SHOT + 1, f'{name}: media tokens'
        # the k-th exchange (text after the k-th media token) names the k-th image's concept
        texts = [tok.decode(p, skip_special_tokens=False) for p in parts]
        for k, text in enumerate(texts):
            question = EPISODE_PHRASES['query_question' if k == 2 * SHOT else 'support_question']
            assert question in text and answer(shown[k]) in text, (k, text)
            assert text.endswith('<|endofchunk|>') and text.count('<|endofchunk|>') == 1
        # one pixel slot per image, in the same order: each equals that file processed on its own
        pixels = sample['pixel_values']
        size = family.image_processor.crop_size['height']
        assert pixels.shape == (2 * SHOT + 1, 1, 3, size, size)
        for k, path in enumerate(paths):
            image = read_image(path)
            assert image.size[0] == image.size[1]  # square: Expand2square leaves it as it is
            expected = family.image_processor(images=image, return_tensors='pt')['pixel_values'][0]
            torch.testing.assert_close(pixels[k, 0], expected, rtol=0, atol=1e-6)
        assert not torch.equal(pixels[0, 0], pixels[-1, 0])  # the slots are not one image repeated


@pytest.mark.parametrize('kind', ['isekai', 'lcl_train'])
def test_only_the_query_answer_is_trained_by_default(flamingo, synth, kind):
    _, family, _ = flamingo
    tok = family.tokenizer
    raw = raw_datasets(synth)[kind]
    media_id = tok.convert_tokens_to_ids('<image>')
    plan = raw.episode(0)
    sample = render(flamingo, raw, 'train')[0]
    ids, labels = sample['input_ids'], sample['labels']
    runs = label_runs(labels)
    assert len(runs) == 1
    assert tok.decode(ids[runs[0]], skip_special_tokens=False).strip() == answer(plan.answer) + '<|endofchunk|>'
    last_media = max(t for t, v in enumerate(ids.tolist()) if v == media_id)
    assert runs[0][0] > last_media and runs[0][-1] == len(ids) - 1  # the query's answer, ending the sequence
    # with in_context_loss every support answer trains too: one run per exchange, each after its own media token
    every = render(flamingo, raw, 'train', in_context_loss=True)[0]
    assert torch.equal(every['input_ids'], ids)
    runs = label_runs(every['labels'])
    starts, _ = segments(ids, media_id)
    assert len(runs) == 2 * SHOT + 1
    assert all(s < r[0] < e for s, e, r in zip(starts, [*starts[1:], len(ids)], runs))
    shown = [n for _, n in plan.support] + [plan.answer]
    assert [tok.decode(ids[r], skip_special_tokens=False).strip() for r in runs] == \
        [answer(n) + '<|endofchunk|>' for n in shown]


def test_the_evaluation_prompt_ends_where_the_query_answer_starts(flamingo, synth):
    _, family, _ = flamingo
    tok = family.tokenizer
    raw = raw_datasets(synth)['isekai']
    for index in range(len(raw)):
        train = render(flamingo, raw, 'train')[index]
        prompt = render(flamingo, raw, 'eval')[index]
        n = len(prompt['input_ids'])
        assert torch.equal(train['input_ids'][:n], prompt['input_ids'])  # the same tokens up to the answer
        assert (train['labels'][:n] == IGNORE_INDEX).all() and train['labels'][n] != IGNORE_INDEX
        assert tok.decode(train['input_ids'][n:], skip_special_tokens=False).strip() == \
            answer(raw.episode(index).answer) + '<|endofchunk|>'
        assert tok.decode(prompt['labels']) == answer(raw.episode(index).answer)  # the reference, kept apart
        torch.testing.assert_close(prompt['pixel_values'], train['pixel_values'], rtol=0, atol=0)
