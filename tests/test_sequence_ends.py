"""Sequences begin and end where the model expects: one BOS, a stop id that is the template's end of
turn (checked at load), and one documented precedence for generation settings."""
import copy
import json
import logging

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import GenerationConfig, PreTrainedTokenizerFast, Seq2SeqTrainingArguments

from mllm.dataset.process_function.conv_template import get_conv_template
from mllm.engine import Collator, MllmTrainer
from mllm.engine.generation import merge_generation_settings
from mllm.engine.trainer import IndexedDataset
from tests.test_conv_dataset import make, rec_item


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer without '</s>' in its vocabulary (as many non-Llama tokenizers)."""
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!<>/[]\n'"))
    vocab = {'<unk>': 0, '<pad>': 1, '<|endoftext|>': 2, '<image>': 3, **{c: 4 + k for k, c in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    backend.pre_tokenizer = pre_tokenizers.Split('', 'isolated')
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token='<unk>', pad_token='<pad>',
                                   eos_token='<|endoftext|>', additional_special_tokens=['<image>'])


def test_stop_ids_are_the_templates_end_of_turn(preprocessor):
    tok = preprocessor['text']
    assert get_conv_template('vicuna_v1.1').resolve_stop_token_ids(tok) == [tok.convert_tokens_to_ids('</s>')]
    # plain ends turns with a newline: generation must stop at the newline token, not only at EOS
    newline = tok('\n', add_special_tokens=False)['input_ids']
    assert len(newline) == 1 and get_conv_template('plain').resolve_stop_token_ids(tok) == newline


def test_end_of_turn_that_is_not_one_token_is_refused_at_load(preprocessor):
    tok = char_tokenizer()
    with pytest.raises(ValueError, match=r"end_of_turn '</s>' is not one token of \w+ .*\['a', '<', '/', 's', '>'\]"):
        get_conv_template('vicuna_v1.1').resolve_stop_token_ids(tok)
    pre = dict(preprocessor, text=tok)
    with pytest.raises(ValueError, match='stop_token_ids'):
        make(pre, [rec_item()])
    # the fixes the message names both work
    assert get_conv_template('vicuna_v1.1', end_of_turn='<|endoftext|>').resolve_stop_token_ids(tok) == [2]
    assert get_conv_template('vicuna_v1.1', stop_token_ids=[2]).resolve_stop_token_ids(tok) == [2]


def without_bos_post_processor(tok):
    tok = copy.deepcopy(tok)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single='$A', pair='$A $B')
    return tok


def with_bos_and_eos_post_processor(tok):
    tok = copy.deepcopy(tok)
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single='<s> $A </s>', pair='<s> $A </s> $B',
        special_tokens=[('<s>', tok.bos_token_id), ('</s>', tok.eos_token_id)])
    return tok


@pytest.mark.parametrize('variant', ['adds_bos', 'adds_nothing', 'adds_bos_and_eos'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_every_sequence_starts_with_one_bos(preprocessor, variant, mode):
    tok = {'adds_bos': lambda t: t, 'adds_nothing': without_bos_post_processor,
           'adds_bos_and_eos': with_bos_and_eos_post_processor}[variant](preprocessor['text'])
    assert (tok('a')['input_ids'][0] == tok.bos_token_id) is (variant != 'adds_nothing')  # the variants differ
    ids = make(dict(preprocessor, text=tok), [rec_item()], mode=mode)[0]['input_ids'].tolist()
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    reference = make(preprocessor, [rec_item()], mode=mode)[0]['input_ids'].tolist()
    assert ids == reference  # same sequence whatever the tokenizer's post-processing


def test_bos_written_by_a_template_is_not_doubled(preprocessor):
    tok = preprocessor['text']
    ids = make(preprocessor, [rec_item()], conv_overrides=dict(system='<s>A chat.'))[0]['input_ids'].tolist()
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_generation_precedence():
    args = Seq2SeqTrainingArguments(output_dir='/tmp/unused', generation_max_length=40, generation_num_beams=3,
                                    generation_config=GenerationConfig(top_k=7, num_beams=2, max_new_tokens=9))
    model_config = GenerationConfig(eos_token_id=2, pad_token_id=3, max_length=4096)
    config, sources = merge_generation_settings(model_config, args, dict(max_new_tokens=5), stop_token_ids=[453, 2])
    assert config.max_new_tokens == 5 and sources['max_new_tokens'] == 'data_args.gen_kwargs'
    assert config.num_beams == 3 and sources['num_beams'] == 'training_args.generation_*'
    assert config.top_k == 7 and sources['top_k'] == 'training_args.generation_config'
    assert config.eos_token_id == [2, 453] and config.pad_token_id == 3
    # without gen_kwargs, generation_max_length applies and replaces the generation_config's max_new_tokens
    config, _ = merge_generation_settings(model_config, args, None)
    assert config.max_length == 40 and config.max_new_tokens is None


def test_generation_stops_at_the_template_stop_id_and_settings_are_logged_once(tiny, tmp_path, caplog):
    model, pre = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():  # every logit 0: greedy decoding emits token 0 at every step
        model.lm_head.weight.zero_()
    ds = make(pre, [rec_item(), rec_item()], mode='eval', conv_overrides=dict(stop_token_ids=[0]))
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    out = {}
    for stops in (None, ds.stop_token_ids):
        with caplog.at_level(logging.INFO, logger='mllm'):
            caplog.clear()
            trainer = MllmTrainer(model=model, args=args, processing_class=pre['text'],
                                  eval_collator=Collator(pre['text'].pad_token_id, 'left'),
                                  gen_kwargs=dict(max_new_tokens=6), stop_token_ids=stops)
            output = trainer.predict(IndexedDataset(ds))
            trainer.predict(IndexedDataset(ds))
        assert sum('generation settings' in r.message for r in caplog.records) == 1
        tokens = output.predictions[:, 2:]
        out[stops is None] = int((tokens != -100).sum(axis=1).max())
    assert out[True] == 6   # without the stop id: runs to max_new_tokens
    assert out[False] == 1  # with it: stops after the first (stop) token
    assert json.dumps(ds.stop_token_ids) == '[0]'
