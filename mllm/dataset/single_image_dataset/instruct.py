"""LLaVA visual instruction data (haotian-liu/LLaVA): llava_instruct_150k.json, llava_v1_5_mix665k.json.

The official files are ONE JSON array of {id, image, conversations: [{from: 'human'|'gpt', value}]}
with '<image>' in the first human turn (at its start or end). `image` is relative to the image
folder: 'COCO-2017 file name' in llava_instruct_150k.json (image_folder = {coco}/train2017), and
'coco/train2017/...', 'gqa/images/...', 'ocr_vqa/images/...', 'textvqa/train_images/...',
'vg/VG_100K/...' in llava_v1_5_mix665k.json (image_folder = LLaVA's `playground/data` folder).
Records are tagged 'file:#index' (their position in the array). All turns are kept: multi-turn
conversations stay multi-turn, and every assistant turn is trained on. As in LLaVA's training code,
'<image>' is moved to the front of its turn, followed by a newline.

Text-only samples (no 'image' key; ~40k ShareGPT conversations in mix665k) cannot be given to a
model that always reads one image, so by default (`text_only='skip'`) they are left out and their
number is logged and kept in `num_text_only`. `text_only='blank'` keeps them with a blank image of
CLIP's mean colour (which normalises to ~0, close to the zero image LLaVA feeds for such samples);
the conversation pipeline then prepends '<image>' to the first turn.
"""
from __future__ import annotations

import logging

from PIL import Image

from ..root import DATASETS, IMAGE_PLACEHOLDER
from ..utils.io import DataFileError, read_json
from ..utils.transform import CLIP_MEAN_COLOR
from .base import AnnotationDataset

logger = logging.getLogger(__name__)
TEXT_ONLY_MODES = ('skip', 'blank')
BLANK_SIZE = (336, 336)


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
    """LLaVA instruction conversations; see the module docstring for the file layout and options."""

    required_fields = ('conversations',)
    template_placeholders = ()

    def __init__(self, filename: str, image_folder: str, text_only: str = 'skip', seed: int = 0):
        if text_only not in TEXT_ONLY_MODES:
            raise ValueError(f"LLaVAInstructDataset: text_only must be one of {list(TEXT_ONLY_MODES)}, "
                             f"got {text_only!r}")
        self.text_only, self.num_text_only = text_only, 0
        super().__init__(filename, image_folder, template_file=None, seed=seed)

    def load_records(self, filename: str) -> list[dict]:
        data = read_json(filename)
        if not isinstance(data, list):
            raise DataFileError(f"{filename}: expected a JSON array of samples, got {type(data).__name__}")
        records = []
        for k, sample in enumerate(data):
            source = f"{filename}:#{k}"
            if not isinstance(sample, dict):
                raise DataFileError(f"{source}: expected an object, got {type(sample).__name__}")
            has_image = bool(sample.get('image'))
            if not has_image:
                self.num_text_only += 1
                if self.text_only == 'skip':
                    continue
            turns = check_conversation(sample.get('conversations'), source, has_image)
            records.append({'id': sample.get('id'), 'image': sample.get('image'), 'conversations': turns,
                            '__source__': source})
        if self.num_text_only:
            action = 'skipped' if self.text_only == 'skip' else 'kept with a blank image'
            logger.info('%s: %d text-only sample(s) %s', filename, self.num_text_only, action)
        return records

    def build_item(self, index: int, record: dict) -> dict:
        if record['image']:
            image = self.get_image(record, key='image')
        else:
            image = Image.new('RGB', BLANK_SIZE, CLIP_MEAN_COLOR)
        return {
            'image': image,
            'target': {'boxes': [], 'points': []},
            'conversations': [dict(turn, boxes_seq=None, points_seq=None) for turn in record['conversations']],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'id': record['id'], 'image': record['image'], 'num_turns': len(record['conversations'])}
