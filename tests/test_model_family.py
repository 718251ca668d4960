"""The model-family object: what finetune.py, the data builder and the trainer ask instead of the family name."""
import logging

import torch
from mmengine.config import ConfigDict

from mllm.dataset.single_image_conversation import SingleImageConvDataset
from mllm.models.builder import build_model
from mllm.models.family import LlavaFamily, ModelFamily
from tests.helpers import ItemList
from tests.test_conv_dataset import rec_item


def test_build_model_returns_the_family_object(family, preprocessor):
    assert isinstance(family, LlavaFamily) and family.name == 'llava'
    assert family.tokenizer is preprocessor['text'] and family.box_formatter is preprocessor['target']
    assert family.num_image_tokens == 64


def test_family_renders_collates_and_stops(family):
    ds = family.render(ItemList([rec_item(), rec_item()]), 'eval', name='Raw')
    assert isinstance(ds, SingleImageConvDataset) and ds.mode == 'eval' and ds.name == 'Raw'
    batch = family.collator('eval')([ds[0], ds[1]])
    assert batch['input_ids'].shape[0] == 2 and batch['pixel_values'].shape[0] == 2
    train = family.collator('train', trim_logits=True)
    assert train.padding_side == 'right' and train.trim_logits
    eos = family.tokenizer.convert_tokens_to_ids('</s>')
    newline = family.tokenizer('\n', add_special_tokens=False)['input_ids']
    assert family.stop_token_ids() == [eos]
    assert family.stop_token_ids({'conv_template': 'plain'}) == newline


def test_trainable_table_follows_the_freezing_plan(caplog):
    with caplog.at_level(logging.INFO):
        model, family = build_model(ConfigDict(model_name_or_path='tiny', freeze_vision_tower=True))
    rows = {prefix: (trainable, total) for prefix, trainable, total in ModelFamily.trainable_table(model)}
    tower = rows['model.vision_tower']
    assert tower[0] == 0 and tower[1] == sum(p.numel() for p in model.model.vision_tower.parameters())
    lm = rows['model.language_model']
    assert lm[0] == lm[1] > 0
    assert sum(t for t, _ in rows.values()) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert any('llava parameters:' in r.message and 'model.vision_tower' in r.message for r in caplog.records)


def test_family_saves_its_processors(family, tmp_path):
    family.save_pretrained(str(tmp_path))
    assert (tmp_path / 'preprocessor_config.json').is_file()


def test_shikra_style_image_wrap_and_patch_token():
    from tests.helpers import label_runs

    model, family = build_model(ConfigDict(model_name_or_path='tiny', image_token='<im_patch>', image_wrap=True))
    tok = family.tokenizer
    ds = family.render(ItemList([rec_item(question='<image> Where is the red circle?')]), 'train', name='Raw')
    ids = ds[0]['input_ids'].tolist()
    start, patch, end = tok.convert_tokens_to_ids(['<im_start>', '<im_patch>', '<im_end>'])
    first = ids.index(start)
    assert ids[first:first + 66] == [start, *[patch] * 64, end] and ids.count(patch) == 64
    assert model.config.image_token_index == patch
    # no transform here: [10, 5, 50, 40] on the 96x64 image -> [10/96, 5/64, 50/96, 40/64]
    assert [tok.decode(ds[0]['input_ids'][r]) for r in label_runs(ds[0]['labels'])] == [
        ' Answer: [0.104,0.078,0.521,0.625] .</s>']
    assert ds.lengths().tolist() == [len(ids)]  # the length estimate counts the wrap tokens
    with torch.no_grad():  # the model splices the image features at the <im_patch> positions
        batch = family.collator('train')([ds[0]])
        assert torch.isfinite(model(**batch).loss)
