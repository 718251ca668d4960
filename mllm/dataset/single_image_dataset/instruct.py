"""LLaVA visual instruction data (haotian-liu/LLaVA): llava_instruct_150k.json, llava_v1_5_mix665k.json,
and Shikra's llava_instruct_150k.jsonl.

Samples are {id, image, conversations: [{from: 'human'|'gpt', value}]} with '<image>' in the first human
turn (at its start or end). The official files hold ONE JSON array (records tagged 'file:#index');
Shikra's copy holds one sample per line (JSON Lines, tagged 'file:line'); the layout is read from the
file's content, not its name. `image` is relative to the image folder: a bare COCO-2017 file name in
llava_instruct_150k.json(l) (image_folder = {coco}/train2017), and 'coco/train2017/...', 'gqa/images/...',
'ocr_vqa/images/...', 'textvqa/train_images/...', 'vg/VG_100K/...' in llava_v1_5_mix665k.json
(image_folder = LLaVA's `playground/data` folder). All turns are kept: multi-turn conversations stay
multi-turn, and every assistant turn is trained on. As in LLaVA's training code, '<image>' is moved to
the front of its turn, followed by a newline.

Text-only samples (no 'image' key; ~40k ShareGPT conversations in mix665k), `text_only=`:
  'keep'   (default) a text-only item: `'image': []` (zero images), no '<image>' in any turn, no target;
           LLaVA-1.5 trains on them the same way;
  'skip'   left out;
  'blank'  kept with a blank image of CLIP's mean colour (normalises to ~0); the conversation pipeline
           then prepends '<image>' to the first turn.
Their number is logged and kept in `num_text_only` in every mode.
"""
from __future__ import annotations

import json
import logging

from PIL import Image

from ..root import DATASETS, IMAGE_PLACEHOLDER
from ..utils.io import DataFileError, read_jsonl
from ..utils.transform import CLIP_MEAN_COLOR
from .base import AnnotationDataset

logger = logging.getLogger(__name__)
TEXT_ONLY_MODES = ('keep', 'skip', 'blank')
BLANK_SIZE = (336, 336)


def read_json_or_jsonl(path: str) -> tuple[str, object]:
    """('json', the document) for a file holding one JSON value, ('jsonl', records) for JSON Lines.

    A JSON Lines file with two or more records is not one JSON document: parsing it whole stops with
    'Extra data' after the first record, which is what tells the layouts apart. Any other syntax error
    names the file and line, as does a bad line of a JSON Lines file (`read_jsonl`).
    """
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        return 'json', json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != 'Extra data':
            raise DataFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    return 'jsonl', read_jsonl(path)


def check_conversation(conversations, source: str, has_image: bool) -> list[dict]:
    """Raise DataFileError (naming `source`) unless the turns are well formed; return them cleaned."""
    if not isinstance(conversations, list) or not conversations:
        raise DataFileError(f"{source}: 'conversations' must be a non-empty list")
    turns = []
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict) or turn.get('from') not in ('human', 'gpt') or not isinstance(
                turn.get('value'), str):
            raise DataFileError(f"{source}: turn {t} must be {{'from': 'human'|'gpt', 'value': str}}, got {turn!r}")
        turns.append({'from': turn['from'], 'value': turn['value']})
    if turns[0]['from'] != 'human' or turns[-1]['from'] != 'gpt':
        raise DataFileError(f"{source}: a conversation must start with a human turn and end with a gpt turn")
    count = sum(turn['value'].count(IMAGE_PLACEHOLDER) for turn in turns)
    if count > (1 if has_image else 0):
        raise DataFileError(f"{source}: {count} {IMAGE_PLACEHOLDER} placeholder(s) for "
                            f"{'one image' if has_image else 'a text-only sample'}")
    # LLaVA's own preprocessing moves the image to the front of its turn ("<image>\n" + text) whether
    # the file puts it first or last; doing the same keeps prompts identical to LLaVA checkpoints' training.
    return [dict(turn, value=IMAGE_PLACEHOLDER + '\n' + turn['value'].replace(IMAGE_PLACEHOLDER, '').strip())
            if IMAGE_PLACEHOLDER in turn['value'] else turn for turn in turns]


@DATASETS.register_module()
class LLaVAInstructDataset(AnnotationDataset):
    """LLaVA instruction conversations; see the module docstring for the file layouts and options."""

    required_fields = ('conversations',)
    template_placeholders = ()

    def __init__(self, filename: str, image_folder: str, text_only: str = 'keep', seed: int = 0):
        if text_only not in TEXT_ONLY_MODES:
            raise ValueError(f"LLaVAInstructDataset: text_only must be one of {list(TEXT_ONLY_MODES)}, "
                             f"got {text_only!r}")
        self.text_only, self.num_text_only = text_only, 0
        super().__init__(filename, image_folder, template_file=None, seed=seed)

    def load_records(self, filename: str) -> list[dict]:
        layout, data = read_json_or_jsonl(filename)
        if layout == 'json' and isinstance(data, dict) and 'conversations' in data:
            layout, data = 'jsonl', read_jsonl(filename)  # JSON Lines with a single sample
        if layout == 'json':
            if not isinstance(data, list):
                raise DataFileError(f"{filename}: expected a JSON array of samples or JSON Lines, "
                                    f"got one {type(data).__name__}")
            samples = [(f"{filename}:#{k}", sample) for k, sample in enumerate(data)]
        else:
            samples = [(sample.pop('__source__'), sample) for sample in data]
        records = []
        for source, sample in samples:
            if not isinstance(sample, dict):
                raise DataFileError(f"{source}: expected an object, got {type(sample).__name__}")
            has_image = bool(sample.get('image'))
            if not has_image:
                self.num_text_only += 1
                if self.text_only == 'skip':
                    continue
            turns = check_conversation(sample.get('conversations'), source, has_image)
            records.append({'id': sample.get('id'), 'image': sample.get('image') or None, 'conversations': turns,
                            '__source__': source})
        if self.num_text_only:
            action = {'keep': 'kept as text-only items', 'skip': 'skipped',
                      'blank': 'kept with a blank image'}[self.text_only]
            logger.info('%s: %d text-only sample(s) %s', filename, self.num_text_only, action)
        return records

    def build_item(self, index: int, record: dict) -> dict:
        if record['image']:
            image = self.get_image(record, key='image')
        elif self.text_only == 'blank':
            image = Image.new('RGB', BLANK_SIZE, CLIP_MEAN_COLOR)
        else:
            image = []  # zero images: the renderer adds no image tokens
        return {
            'image': image,
            'target': {'boxes': [], 'points': []},
            'conversations': [dict(turn, boxes_seq=None, points_seq=None) for turn in record['conversations']],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'id': record['id'], 'image': record['image'], 'num_turns': len(record['conversations'])}
