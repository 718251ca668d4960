"""Evaluation never swaps or drops a sample silently: bad samples raise with their name, or (on_bad_sample
='skip') become `{"id": i, "skipped": reason}` lines counted in `<prefix>_skipped`; datasets end at len."""
import json

import pytest
from transformers import Seq2SeqTrainingArguments

from mllm.dataset.validation import InvalidSampleError
from mllm.engine import Collator, MllmTrainer
from mllm.pipeline.finetune import do_multi_predict
from tests.test_conv_dataset import make, plain_item, rec_item


class CountingMetric:
    """Accuracy of exact matches; remembers what it was given."""

    def __init__(self, exclude_skipped=False):
        self.exclude_skipped = exclude_skipped

    def __call__(self, predictions, references):
        self.seen = list(predictions)
        correct = [p == r for p, r in zip(predictions, references)]
        return {'accuracy': sum(correct) / len(correct), 'total': len(correct)}, [{'correct': c} for c in correct]


def long_item():
    return rec_item(question='<image> ' + 'where is the red circle ' * 40 + '?', source='rec.jsonl:2')


def trainer_for(tiny, tmp_path, **gen):
    model, pre = tiny
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[],
                                    per_device_eval_batch_size=2)
    return MllmTrainer(model=model, args=args, processing_class=pre['text'],
                       data_collator=Collator(pre['text'].pad_token_id, 'right'),
                       eval_collator=Collator(pre['text'].pad_token_id, 'left'),
                       gen_kwargs=dict(max_new_tokens=3, do_sample=False, **gen))


def test_dataset_ends_at_its_length(preprocessor):
    for mode in ('train', 'eval'):
        ds = make(preprocessor, [rec_item(), rec_item()], mode=mode)
        with pytest.raises(IndexError, match='index 2 out of range for 2'):
            ds[2]
        assert len(list(iter(ds))) == 2  # iteration ends (it wrapped around for ever before)


def test_eval_raises_naming_the_sample_instead_of_substituting(preprocessor):
    ds = make(preprocessor, [rec_item(), long_item(), rec_item()], mode='eval', max_length=200)
    with pytest.raises(InvalidSampleError, match=r"Raw\[1\] \(rec\.jsonl:2\).*more than max_length=200.*on_bad_sample"):
        ds[1]


def test_eval_skip_policy_marks_the_sample(preprocessor):
    ds = make(preprocessor, [rec_item(), long_item()], mode='eval', max_length=200, on_bad_sample='skip')
    sample = ds[1]
    assert 'max_length=200' in sample['skipped'] and 'Raw[1]' in sample['skipped']
    assert sample['input_ids'].tolist() == [preprocessor['text'].bos_token_id] and sample['pixel_values'] is None
    assert 'skipped' not in ds[0]


@pytest.mark.parametrize('exclude', [False, True])
def test_skipped_sample_is_written_counted_and_scored_as_documented(tiny, tmp_path, exclude):
    _, pre = tiny
    ds = make(pre, [rec_item(), long_item(), rec_item(), rec_item()], mode='eval', max_length=200,
              on_bad_sample='skip')
    metric = CountingMetric(exclude_skipped=exclude)
    metrics = trainer_for(tiny, tmp_path).predict_and_score(ds, metric, prefix='probe')
    lines = [json.loads(x) for x in open(tmp_path / 'probe_extra_prediction.jsonl')]
    assert [x['id'] for x in lines] == [0, 1, 2, 3]
    assert set(lines[1]) == {'id', 'skipped'} and 'max_length=200' in lines[1]['skipped']
    assert all('pred' in lines[i] for i in (0, 2, 3))
    assert metrics['probe_skipped'] == 1
    # default: the skipped sample stays in the denominator as an empty answer; excluded only on request
    assert metrics['probe_total'] == (3 if exclude else 4)
    assert ('' in metric.seen) is (not exclude)


def test_earlier_answers_of_an_eval_sample_are_context(preprocessor):
    # 'ima' + 'ge' is one token: as a TRAINING answer it cannot be masked; as eval context it is fine.
    item = plain_item('<image> ima', 'ge')
    item['conversations'] += [{'from': 'human', 'value': 'again'}, {'from': 'gpt', 'value': 'a red circle'}]
    kept_text = dict(conv_template='plain', conv_overrides=dict(user_text=True), transform=None)  # human text kept
    train = make(preprocessor, [item, plain_item('<image>', 'ok')], **kept_text)
    train[0]
    assert len(train.skipped) == 1
    sample = make(preprocessor, [item], mode='eval', **kept_text)[0]
    assert preprocessor['text'].decode(sample['labels']) == 'a red circle'


class FakeTrainer:
    def __init__(self, failing):
        self.failing, self.done = failing, []

    def predict_and_score(self, dataset, compute_metric, prefix):
        if prefix in self.failing:
            raise InvalidSampleError(f'{prefix}: too long')
        self.done.append(prefix)


def test_one_failing_multitest_set_does_not_stop_the_others():
    trainer = FakeTrainer({'multitest_b'})
    sets = {name: {'dataset': None, 'compute_metric': None} for name in ('a', 'b', 'c')}
    with pytest.raises(RuntimeError, match=r'1 of 3 multitest set\(s\) failed \(b\)'):
        do_multi_predict(trainer, sets)
    assert trainer.done == ['multitest_a', 'multitest_c']


def test_unreadable_image_in_eval_is_skipped_by_policy(preprocessor, tmp_path):
    class Broken:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            from mllm.dataset.utils.io import DataFileError
            raise DataFileError('x.jsonl:1: cannot read image x.jpg')

    from mllm.dataset.single_image_conversation import SingleImageConvDataset
    ds = SingleImageConvDataset(Broken(), preprocessor, mode='eval', on_bad_sample='skip')
    assert 'cannot read image' in ds[0]['skipped']
    with pytest.raises(ValueError, match='on_bad_sample'):
        SingleImageConvDataset(Broken(), preprocessor, mode='eval', on_bad_sample='ignore')
