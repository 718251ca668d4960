"""Convert the official Flickr30K Entities release to grounded-caption JSONL (Shikra's CWB_flickr30k_* layout).

Official files read (https://github.com/BryanPlummer/flickr30k_entities; unzip `annotations.zip` of that
repository, the images come separately from the Flickr30K form as `flickr30k-images.tar.gz`):

    <root>/Sentences/<image_id>.txt     five captions, phrases marked `[/EN#18/people A man]`
    <root>/Annotations/<image_id>.xml   PASCAL-VOC-like boxes per coreference-chain id
    <root>/train.txt, val.txt, test.txt image ids of each split (or pass --split-dir)

Command:

    python tools/prepare_data/flickr30k_entities.py --root /data/flickr30k_entities --out-dir /data/annotations

writes `CWB_flickr30k_train.jsonl`, `CWB_flickr30k_eval.jsonl` (the val split, under Shikra's name) and
`CWB_flickr30k_test.jsonl`, one record per caption (or, with --per-image, one per image) with the fields of
Shikra's files, so both load with the same dataset classes:

    {"id": 0, "image_id": "1000092795", "sentence_id": 0,
     "sentence": "<ph_st>Two young guys<ph_ed> with ... in the yard .",
     "boxes": [[158, 124, 218, 334], ...], "boxes_seq": [[0, 3], ...]}

Conventions:
- Boxes: the XML holds 1-based, inclusive pixel indices (xmin=1 is the first column, xmax=width the
  last). We subtract 1 from all four values, [xmin-1, ymin-1, xmax-1, ymax-1] (0-based inclusive
  indices, so a box over the whole image is [0, 0, width-1, height-1]), exactly as the official loader
  (flickr30k_entities_utils.get_annotations) and Shikra's released CWB_flickr30k_*.jsonl do. Why: users
  hold Shikra's files and published Flickr30K numbers were made with them; one convention for both
  sources means mixing or swapping them never shifts a box by a pixel. (Read as pixel edges, the
  right/bottom edges are one pixel short; we accept that to match.) Values are then clamped to
  [0, width] x [0, height] (the Flickr30k datasets clamp Shikra's records to the image the same way);
  clamped boxes are counted and printed. A box with xmax < xmin or ymax < ymin is an error naming the file.
- An <object> with several <name> tags is one box shared by several chains; an entity with several
  <object>s has several boxes. Within a caption every box appears once in `boxes`, ordered by the first
  phrase that mentions it; `boxes_seq[k]` lists the boxes of the k-th marked phrase. (Shikra's files
  list a caption's boxes in set order and repeat a shared box once per chain; the datasets renumber
  both sources into this first-mention order, so their items are equal.)
- Phrases whose chain has no box (`notvisual` chain 0, <nobndbox>, <scene>) keep their words and get no
  <ph_st>/<ph_ed> marker. Words are re-joined with single spaces (as the official loader does).
- Unbalanced bracket markup raises `Flickr30kFormatError` naming `Sentences/<id>.txt:<line>`.
- --per-image keeps the first caption of each image and adds `captions`: all its plain captions
  (for caption metrics with several references).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import write_jsonl

PHRASE_START = '<ph_st>'
PHRASE_END = '<ph_ed>'
# Output names follow Shikra's released files, so either can be used with the same config.
OUTPUT_NAMES = {'train': 'CWB_flickr30k_train.jsonl', 'val': 'CWB_flickr30k_eval.jsonl',
                'test': 'CWB_flickr30k_test.jsonl'}
# `[/EN#<chain id>/<type 1>/.../<type n>`: the token that opens a phrase.
_MARKER = re.compile(r'^\[/EN#(\d+)((?:/[^/\s\[\]]+)+)$')


class Flickr30kFormatError(ValueError):
    """An official file that does not follow the Flickr30K Entities format; the message names file:line."""


# -- Sentences/<id>.txt ------------------------------------------------------------------------
def parse_sentence(text: str, where: str) -> dict:
    """Split one marked caption into its words and phrases.

    Returns {'words': [...], 'phrases': [{'first_word_index', 'num_words', 'phrase', 'entity_id', 'types'}]}.
    `where` ('file:line') prefixes every error.
    """
    words: list[str] = []
    phrases: list[dict] = []
    current: dict | None = None
    for token in text.split():
        if token.startswith('['):
            if current is not None:
                raise Flickr30kFormatError(f"{where}: unbalanced brackets: {token!r} opens a phrase while "
                                           f"[/EN#{current['entity_id']} ... (word {current['first_word_index']}) "
                                           f"is still open")
            match = _MARKER.match(token)
            if match is None:
                raise Flickr30kFormatError(f"{where}: malformed phrase marker {token!r} "
                                           f"(expected [/EN#<id>/<type> followed by the phrase words)")
            current = {'first_word_index': len(words), 'entity_id': match.group(1),
                       'types': match.group(2).strip('/').split('/'), 'words': []}
            continue
        if '[' in token:
            raise Flickr30kFormatError(f"{where}: unbalanced brackets: stray '[' in {token!r}")
        closes = token.endswith(']')
        word = token[:-1] if closes else token
        if ']' in word:
            raise Flickr30kFormatError(f"{where}: unbalanced brackets: stray ']' in {token!r}")
        if closes and current is None:
            raise Flickr30kFormatError(f"{where}: unbalanced brackets: {token!r} closes a phrase that was "
                                       f"never opened")
        if closes and not word:
            raise Flickr30kFormatError(f"{where}: empty word before ']' in phrase [/EN#{current['entity_id']}")
        words.append(word)
        if current is not None:
            current['words'].append(word)
            if closes:
                phrases.append({'first_word_index': current['first_word_index'],
                                'num_words': len(current['words']), 'phrase': ' '.join(current['words']),
                                'entity_id': current['entity_id'], 'types': current['types']})
                current = None
    if current is not None:
        raise Flickr30kFormatError(f"{where}: unbalanced brackets: phrase [/EN#{current['entity_id']} opened at "
                                   f"word {current['first_word_index']} is never closed with ']'")
    return {'words': words, 'phrases': phrases}


def read_sentences(path: str) -> list[dict]:
    """All captions of one image, each with `line` (1-based line in the file); empty lines are skipped."""
    if not os.path.isfile(path):
        raise Flickr30kFormatError(f"sentence file not found: {path}")
    out = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parsed = parse_sentence(line, f"{path}:{lineno}")
            parsed['line'] = lineno
            out.append(parsed)
    return out


# -- Annotations/<id>.xml -----------------------------------------------------------------------
def _int(element, tag: str, where: str) -> int:
    child = element.find(tag)
    if child is None or child.text is None:
        raise Flickr30kFormatError(f"{where}: missing <{tag}>")
    try:
        return int(child.text.strip())
    except ValueError:
        raise Flickr30kFormatError(f"{where}: <{tag}> is not an integer: {child.text!r}") from None


def read_annotation(path: str) -> dict:
    """Parse one XML file: {'width', 'height', 'boxes': {entity_id: [object index, ...]}, 'objects': [box],
    'clamped': number of boxes changed by clamping}.

    `objects[k]` is the xyxy box of the k-th <object> that has a <bndbox> (see the module docstring for
    the conversion); ids that only have <nobndbox>/<scene> objects are absent from `boxes`.
    """
    if not os.path.isfile(path):
        raise Flickr30kFormatError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise Flickr30kFormatError(f"{path}: not valid XML ({e})") from None
    size = root.find('size')
    if size is None:
        raise Flickr30kFormatError(f"{path}: missing <size>")
    width, height = _int(size, 'width', f"{path} <size>"), _int(size, 'height', f"{path} <size>")
    boxes: dict[str, list[int]] = {}
    objects: list[list[int]] = []
    clamped = 0
    for k, obj in enumerate(root.findall('object')):
        where = f"{path} <object> #{k + 1}"
        names = [n.text.strip() for n in obj.findall('name') if n.text and n.text.strip()]
        if not names:
            raise Flickr30kFormatError(f"{where}: no <name>")
        bndbox = obj.find('bndbox')
        if bndbox is None:
            continue  # <nobndbox>/<scene> chain: no box to ground it with
        xmin, ymin, xmax, ymax = (_int(bndbox, t, where) for t in ('xmin', 'ymin', 'xmax', 'ymax'))
        if xmax < xmin or ymax < ymin:
            raise Flickr30kFormatError(f"{where}: inverted box xmin={xmin} ymin={ymin} xmax={xmax} ymax={ymax}")
        official = [xmin - 1, ymin - 1, xmax - 1, ymax - 1]  # the official loader's values
        box = [min(max(v, 0), limit) for v, limit in zip(official, (width, height, width, height), strict=True)]
        if box != official:
            clamped += 1
        for name in names:
            boxes.setdefault(name, []).append(len(objects))
        objects.append(box)
    return {'width': width, 'height': height, 'boxes': boxes, 'objects': objects, 'clamped': clamped}


# -- records ------------------------------------------------------------------------------------
def caption_record(image_id: str, sentence_id: int, parsed: dict, annotation: dict) -> dict:
    """One Shikra-style record: the caption with <ph_st>...<ph_ed> around grounded phrases."""
    words = list(parsed['words'])
    object_to_box: dict[int, int] = {}
    boxes: list[list[int]] = []
    boxes_seq: list[list[int]] = []
    grounded = []
    for phrase in parsed['phrases']:
        objects = annotation['boxes'].get(phrase['entity_id'])
        if not objects:
            continue
        group = []
        for obj in objects:
            if obj not in object_to_box:
                object_to_box[obj] = len(boxes)
                boxes.append(list(annotation['objects'][obj]))
            group.append(object_to_box[obj])
        boxes_seq.append(group)
        grounded.append(phrase)
    for phrase in grounded:  # wrap first and last word; phrases never overlap, so indices stay valid
        first = phrase['first_word_index']
        last = first + phrase['num_words'] - 1
        words[first] = PHRASE_START + words[first]
        words[last] = words[last] + PHRASE_END
    return {'image_id': image_id, 'sentence_id': sentence_id, 'sentence': ' '.join(words), 'boxes': boxes,
            'boxes_seq': boxes_seq}


def convert_images(root: str, image_ids: list[str], per_image: bool = False,
                   counts: dict | None = None) -> list[dict]:
    """Records for `image_ids` read from <root>/Sentences and <root>/Annotations, numbered by `id`.

    `counts`, when given, gets 'clamped_boxes' (boxes of the XML files that clamping changed) added.
    """
    records = []
    for image_id in image_ids:
        annotation = read_annotation(os.path.join(root, 'Annotations', f'{image_id}.xml'))
        if counts is not None:
            counts['clamped_boxes'] = counts.get('clamped_boxes', 0) + annotation['clamped']
        captions = read_sentences(os.path.join(root, 'Sentences', f'{image_id}.txt'))
        per_caption = [caption_record(image_id, k, parsed, annotation) for k, parsed in enumerate(captions)]
        if per_image and per_caption:
            first = per_caption[0]
            first['captions'] = [' '.join(parsed['words']) for parsed in captions]
            per_caption = [first]
        for record in per_caption:
            records.append({'id': len(records), **record})
    return records


def read_split(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise Flickr30kFormatError(f"split file not found: {path}")
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', required=True,
                        help='folder with Sentences/ and Annotations/ (the unzipped annotations.zip)')
    parser.add_argument('--split-dir', help='folder with train.txt/val.txt/test.txt (default: --root)')
    parser.add_argument('--out-dir', required=True, help='where the CWB_flickr30k_*.jsonl files are written')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'], choices=sorted(OUTPUT_NAMES))
    parser.add_argument('--per-image', action='store_true',
                        help='one record per image (its first caption, plus all captions in `captions`)')
    args = parser.parse_args(argv)
    written = {}
    for split in args.splits:
        image_ids = read_split(os.path.join(args.split_dir or args.root, f'{split}.txt'))
        counts: dict = {}
        records = convert_images(args.root, image_ids, per_image=args.per_image, counts=counts)
        path = os.path.join(args.out_dir, OUTPUT_NAMES[split])
        write_jsonl(records, path)
        grounded = sum(len(r['boxes_seq']) for r in records)
        print(f"{split}: {len(image_ids)} images -> {len(records)} records, {grounded} grounded phrases, "
              f"{counts.get('clamped_boxes', 0)} boxes clamped to the image: {path}")
        written[split] = path
    return written


if __name__ == '__main__':
    try:
        main()
    except Flickr30kFormatError as e:
        sys.exit(f"error: {e}")
