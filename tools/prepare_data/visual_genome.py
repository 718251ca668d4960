"""Visual Genome v1.2 region descriptions -> REC / GC JSONL, one record per region.

Reads two files of the official release (https://homes.cs.washington.edu/~ranjay/visualgenome/api.html,
"Version 1.2"): `region_descriptions.json` (from region_descriptions.json.zip: a list of
{id, regions: [{region_id, image_id, phrase, x, y, width, height}]}) and `image_data.json` (from
image_data.json.zip: a list of {image_id, width, height, url, coco_id, flickr_id}). Images come
from images.zip and images2.zip, which unpack to VG_100K/ and VG_100K_2/; put both under the {vg}
root. The image path is the last two parts of the image's url (.../VG_100K_2/1.jpg -> VG_100K_2/1.jpg).

Each line: {img_path, expression (the phrase), bbox (pixel xyxy clipped to the image), dataset_name,
height, width, image_id, region_id}: the fields of Shikra's GC_genome196_train.jsonl, read by
RECDataset (REC on regions) and GCDataset (grounded captions). Regions whose clipped box is
narrower or shorter than --min-size pixels, or whose phrase is empty, are skipped and counted.

    python tools/prepare_data/visual_genome.py --region-descriptions /data/vg/region_descriptions.json \
        --image-data /data/vg/image_data.json --output /data/annotations/GC_genome_train.jsonl
"""
from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlparse

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.prepare_data.common import read_json, write_jsonl

OUTPUT_FILE = 'GC_genome_train.jsonl'
REGION_FIELDS = ('phrase', 'x', 'y', 'width', 'height')


class VGFormatError(ValueError):
    """An official VG file does not hold what the release format promises; names file and entry."""


def image_path_from_url(url: str) -> str:
    """'https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg' -> 'VG_100K_2/1.jpg'."""
    parts = [p for p in urlparse(url).path.split('/') if p]
    if len(parts) < 2:
        raise ValueError(f"cannot derive an image path from url {url!r}")
    return '/'.join(parts[-2:])


def index_images(image_data: list[dict], path: str = 'image_data.json') -> dict[int, dict]:
    """{image_id: {img_path, width, height}}; v1.2 names the id `image_id`, v1.0 `id`."""
    images = {}
    for k, entry in enumerate(image_data):
        image_id = entry.get('image_id', entry.get('id'))
        missing = [f for f in ('width', 'height', 'url') if f not in entry]
        missing += [] if image_id is not None else ['image_id']
        if missing:
            raise VGFormatError(f"{path}: entry #{k}: missing field(s) {missing}")
        images[image_id] = {'img_path': image_path_from_url(entry['url']),
                            'width': entry['width'], 'height': entry['height']}
    return images


def convert(region_descriptions: list[dict], image_data: list[dict], min_size: float = 1.0,
            regions_path: str = 'region_descriptions.json',
            images_path: str = 'image_data.json') -> tuple[list[dict], dict[str, int]]:
    """(records, counts): counts has regions, written, degenerate, empty_phrase, clipped."""
    images = index_images(image_data, images_path)
    records = []
    counts = {'regions': 0, 'written': 0, 'degenerate': 0, 'empty_phrase': 0, 'clipped': 0}
    for k, entry in enumerate(region_descriptions):
        if 'regions' not in entry:
            raise VGFormatError(f"{regions_path}: entry #{k} (id={entry.get('id')}): missing field 'regions'")
        for r, region in enumerate(entry['regions']):
            counts['regions'] += 1
            image_id = region.get('image_id', entry.get('id'))
            where = f"{regions_path}: entry #{k} region #{r} (region_id={region.get('region_id')})"
            missing = [f for f in REGION_FIELDS if f not in region] + ([] if image_id is not None else ['image_id'])
            if missing:
                raise VGFormatError(f"{where}: missing field(s) {missing}")
            image = images.get(image_id)
            if image is None:
                raise VGFormatError(f"{where}: image_id {image_id} is not in {images_path}")
            phrase = region['phrase'].strip()
            if not phrase:
                counts['empty_phrase'] += 1
                continue
            w, h = image['width'], image['height']
            x0, y0 = float(region['x']), float(region['y'])
            x1, y1 = x0 + float(region['width']), y0 + float(region['height'])
            box = [min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h)]
            if box[2] - box[0] < min_size or box[3] - box[1] < min_size:
                counts['degenerate'] += 1
                continue
            counts['clipped'] += box != [x0, y0, x1, y1]
            records.append({'img_path': image['img_path'], 'expression': phrase, 'bbox': box,
                            'dataset_name': 'genome', 'height': h, 'width': w,
                            'image_id': image_id, 'region_id': region.get('region_id')})
    counts['written'] = len(records)
    return records, counts


def main(argv=None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--region-descriptions', required=True, help='VG v1.2 region_descriptions.json')
    parser.add_argument('--image-data', required=True, help='VG v1.2 image_data.json')
    parser.add_argument('--output', required=True, help=f'output JSONL (the configs read {OUTPUT_FILE})')
    parser.add_argument('--min-size', type=float, default=1.0,
                        help='skip regions whose clipped box is narrower or shorter than this (pixels)')
    args = parser.parse_args(argv)

    regions, images = read_json(args.region_descriptions, VGFormatError), read_json(args.image_data, VGFormatError)
    records, counts = convert(regions, images, args.min_size, args.region_descriptions, args.image_data)
    write_jsonl(records, args.output)
    print(f"{args.output}: " + ', '.join(f'{k} {v}' for k, v in counts.items()))
    return counts


if __name__ == '__main__':
    main()
