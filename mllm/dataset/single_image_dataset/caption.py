"""COCO captioning, read from the official caption files, the Karpathy split or Shikra's caption JSONL.

Three layouts are recognised by their content:
  * official `annotations/captions_{train,val}2014.json` (COCO format, indexed with pycocotools):
    `images` [{id, file_name, width, height, ...}] and `annotations` [{id, image_id, caption}];
    image paths are `image_folder/file_name` (image_folder = {coco}/train2014 or val2014);
  * Karpathy's `dataset_coco.json`: {'dataset': 'coco', 'images': [{filepath, filename, split,
    cocoid, sentences: [{raw, tokens}, ...]}]}; image paths are `image_folder/filepath/filename`
    (image_folder = the COCO root) and `split` ('train', 'val', 'test', 'restval', or several
    joined by '+', e.g. 'train+restval') picks the images;
  * Shikra's `CAP_coco2014_train.jsonl`: JSON Lines, one caption a line, {img_path, caption} with
    `img_path` a COCO-2014 file name (image_folder = {coco}/train2014); records are tagged 'file:line',
    and the image id is read from the file name ('COCO_train2014_000000000009.jpg' -> 9).
mode='train' gives one item per caption; mode='eval' one item per image, its first caption as the
reference text and all of them in `meta(index)['captions']` for CaptionComputeMetrics. Images
without any caption are left out of 'eval' (nothing to score against) and their count logged.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os

from pycocotools.coco import COCO

from ..root import DATASETS, IMAGE_PLACEHOLDER
from ..utils.io import DataFileError, read_jsonl
from .base import AnnotationDataset
from .instruct import read_json_or_jsonl

logger = logging.getLogger(__name__)
KARPATHY_SPLITS = ('train', 'val', 'test', 'restval')


def clean_caption(text: str) -> str:
    """Collapse whitespace: COCO captions carry stray newlines and trailing spaces."""
    return ' '.join(str(text).split())


def coco_image_id(file_name: str) -> int | str:
    """The id in a COCO file name ('COCO_train2014_000000000009.jpg' -> 9); the name itself if it has none."""
    digits = os.path.splitext(os.path.basename(file_name))[0].rsplit('_', 1)[-1]
    return int(digits) if digits.isdigit() else file_name


@DATASETS.register_module()
class COCOCaptionDataset(AnnotationDataset):
    """Captions of COCO images; see the module docstring for the two accepted file layouts."""

    required_fields = ('img_path', 'captions', 'image_id')
    template_placeholders = (IMAGE_PLACEHOLDER,)

    def __init__(self, filename: str, image_folder: str, mode: str = 'train', split: str | None = None,
                 template_file: str = 'Caption.json', seed: int = 0):
        if mode not in ('train', 'eval'):
            raise ValueError(f"COCOCaptionDataset: mode must be 'train' or 'eval', got {mode!r}")
        self.mode, self.split = mode, split
        self.images_without_captions = 0
        super().__init__(filename, image_folder, template_file=template_file, seed=seed)

    # -- reading -------------------------------------------------------------------------------
    def load_records(self, filename: str) -> list[dict]:
        layout, data = read_json_or_jsonl(filename)
        if layout == 'json' and isinstance(data, dict) and 'caption' in data:
            layout, data = 'jsonl', read_jsonl(filename)  # Shikra's layout with a single caption
        if layout == 'jsonl':
            if self.split is not None:
                raise ValueError(f"COCOCaptionDataset: split={self.split!r} applies to Karpathy's dataset_coco.json "
                                 f"only; {filename} is a caption JSONL (one split per file)")
            per_caption = self._read_shikra(data)
            per_image = self._group_by_image(per_caption)
        elif not isinstance(data, dict) or not isinstance(data.get('images'), list):
            raise DataFileError(f"{filename}: expected a COCO captions file, Karpathy's dataset_coco.json "
                                f"(an object with an 'images' list) or a caption JSONL")
        elif 'annotations' in data:
            if self.split is not None:
                raise ValueError(f"COCOCaptionDataset: split={self.split!r} applies to Karpathy's dataset_coco.json "
                                 f"only; {filename} is an official COCO file (one split per file)")
            per_image, per_caption = self._read_official(filename, data)
        else:
            per_image = self._read_karpathy(filename, data)
            per_caption = [{'img_path': r['img_path'], 'image_id': r['image_id'], 'captions': [caption],
                            '__source__': f"{r['__source__']}.sentences[{j}]"}
                           for r in per_image for j, caption in enumerate(r['captions'])]
        if self.mode == 'train':
            return per_caption
        kept = [r for r in per_image if r['captions']]
        self.images_without_captions = len(per_image) - len(kept)
        if self.images_without_captions:
            logger.info('%s: %d image(s) without captions left out', filename, self.images_without_captions)
        return kept

    def _read_official(self, filename: str, data: dict) -> tuple[list[dict], list[dict]]:
        if not isinstance(data['annotations'], list):
            raise DataFileError(f"{filename}: 'annotations' must be a list")
        for k, ann in enumerate(data['annotations']):
            missing = [key for key in ('id', 'image_id', 'caption') if not isinstance(ann, dict) or key not in ann]
            if missing:
                raise DataFileError(f"{filename}: annotations[{k}] lacks field(s) {missing}")
        for k, img in enumerate(data['images']):
            missing = [key for key in ('id', 'file_name') if not isinstance(img, dict) or key not in img]
            if missing:
                raise DataFileError(f"{filename}: images[{k}] lacks field(s) {missing}")
        known = {img['id'] for img in data['images']}
        for ann in data['annotations']:
            if ann['image_id'] not in known:
                raise DataFileError(f"{filename}: annotation id={ann['id']} refers to unknown image_id "
                                    f"{ann['image_id']}")
        coco = COCO()  # index the already-read dict: no second parse, and file:line errors stay ours
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
            coco.createIndex()
        per_image = [{'img_path': coco.imgs[image_id]['file_name'], 'image_id': image_id,
                      'captions': [clean_caption(a['caption']) for a in coco.imgToAnns.get(image_id, [])],
                      '__source__': f"{filename}:image_id={image_id}"}
                     for image_id in coco.getImgIds()]
        # Training items keep the file's annotation order; the source names the annotation.
        per_caption = [{'img_path': coco.imgs[a['image_id']]['file_name'], 'image_id': a['image_id'],
                        'captions': [clean_caption(a['caption'])], '__source__': f"{filename}:annotation_id={a['id']}"}
                       for a in data['annotations']]
        return per_image, per_caption

    @staticmethod
    def _read_shikra(lines: list[dict]) -> list[dict]:
        records = []
        for line in lines:
            source = line['__source__']
            missing = [key for key in ('img_path', 'caption') if key not in line]
            if missing:
                raise DataFileError(f"{source}: missing field(s) {missing}")
            if not isinstance(line['img_path'], str) or not isinstance(line['caption'], str):
                raise DataFileError(f"{source}: 'img_path' and 'caption' must be strings")
            image_id = line.get('image_id', coco_image_id(line['img_path']))
            records.append({'img_path': line['img_path'], 'image_id': image_id,
                            'captions': [clean_caption(line['caption'])], '__source__': source})
        return records

    @staticmethod
    def _group_by_image(per_caption: list[dict]) -> list[dict]:
        """One record per image in order of first appearance, tagged with its first caption's source."""
        per_image: dict[str, dict] = {}
        for r in per_caption:
            entry = per_image.setdefault(r['img_path'], dict(r, captions=[]))
            entry['captions'].extend(r['captions'])
        return list(per_image.values())

    def _read_karpathy(self, filename: str, data: dict) -> list[dict]:
        wanted = (self.split or '').split('+')
        unknown = [s for s in wanted if s not in KARPATHY_SPLITS]
        if unknown:
            raise ValueError(f"COCOCaptionDataset: {filename} is a Karpathy split file; split must be one of "
                             f"{list(KARPATHY_SPLITS)} or several joined by '+', got {self.split!r}")
        records = []
        for k, img in enumerate(data['images']):
            source = f"{filename}:#{k}"
            missing = [key for key in ('filepath', 'filename', 'split', 'sentences')
                       if not isinstance(img, dict) or key not in img]
            if missing:
                raise DataFileError(f"{source}: image entry lacks field(s) {missing}")
            if img['split'] not in wanted:
                continue
            sentences = img['sentences']
            if not all(isinstance(s, dict) and 'raw' in s for s in sentences):
                raise DataFileError(f"{source}: every sentence needs a 'raw' caption")
            records.append({
                'img_path': os.path.join(img['filepath'], img['filename']),
                'image_id': img.get('cocoid', img.get('imgid', k)),
                'captions': [clean_caption(s['raw']) for s in sentences],
                '__source__': source,
            })
        return records

    # -- items ---------------------------------------------------------------------------------
    def build_item(self, index: int, record: dict) -> dict:
        return {
            'image': self.get_image(record),
            'target': {'boxes': [], 'points': []},
            'conversations': [
                {'from': 'human', 'value': self.question(index), 'boxes_seq': None, 'points_seq': None},
                {'from': 'gpt', 'value': record['captions'][0], 'boxes_seq': None, 'points_seq': None},
            ],
        }

    def meta(self, index: int) -> dict:
        record = self.records[index]
        return {'image_id': record['image_id'], 'captions': list(record['captions'])}
