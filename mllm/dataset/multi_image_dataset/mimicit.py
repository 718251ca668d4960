"""MIMIC-IT (Otter's in-context instruction data, Luodian/Otter `mimic-it/`) as canonical multi-image items.

Files of one subset (e.g. `DC/DC_instructions.json`, `DC/DC_train.json`, images `DC.json` or `DC.parquet`):
  instructions_file   {"meta": {...}, "data": {ins_id: {"instruction": str, "answer": str,
                                                        "image_ids": [image_id, ...], "rel_ins_ids": [ins_id, ...]}}}
  images_file         the flat base64 JSON {image_id: base64 string} that Otter's convert-it writes, or Otter's
                      parquet (index = image ids, column "base64"; a file or a folder of part files). Parquet is
                      read with pyarrow, only when such a file is given (pip install pyarrow).
  train_config_file   optional {ins_id: [in-context ins_id, ...]}: its keys are the queries (in file order) and its
                      lists replace `rel_ins_ids`; without it every instruction is a query with its `rel_ins_ids`.

Item (DESIGN.md section 4, multi-image): `'image'` holds one entry per media, in text order: a PIL image, or for
a video media a list of PIL frames. `'conversations'` holds the in-context examples first (human/gpt pairs with
`'in_context': True`; the renderer decides whether their answers carry loss), then the query's pair. Every human
turn starts with one `<image>` per media of its own, followed directly by the instruction. `'target'` is {}.
`'source'` is `instructions_file:ins_id`.

Choices (each documented where it is made):
- In-context examples: `num_in_context` (None = all, Otter's behaviour) drawn without replacement from the
  candidate list, seeded by (seed, epoch, index), kept in the list's order; the query itself is never its own
  example. `max_num_media` drops the examples farthest from the query until the item fits.
- Video: Otter decides by dataset (older code: instruction ids starting with DC / TVC / E4D / SN / FunQA;
  newer code: the config's VIDEO_TEXT group). `media='auto'` follows the id prefixes, 'video' makes every
  instruction's images the frames of one media, 'images' makes every image its own media. Otter itself
  stacks all images of an instruction as frames of one media (also for spot-the-difference pairs); here SD/CGD
  pairs are two media, which lets a model attend to each image on its own. `max_frames` subsamples evenly.
- A turn whose media equal the previous media-bearing turn's (the DC / TVC / E4D examples all ask about the
  query's own video) gets no `<image>` of its own (`merge_repeated_media`): this is Otter's own text layout
  ("<image>User: q1 ... <|endofchunk|>User: q2 ..."), and with attention to the immediately preceding media
  the turn still sees that video. Without it a 16-frame video would repeat once per example.
- Images are decoded only in `__getitem__`: RGB as is, anything with alpha (RGBA, LA, PA, P with transparency)
  composited on white (Otter's converter writes RGB PNGs, so released payloads are unaffected; a plain
  convert('RGB') would turn transparent pixels into whatever colour they hide, often black).
- Validation at load names file and ins_id: missing / mistyped fields, empty instruction or answer,
  unknown query ids, unknown in-context ids (`unknown_in_context='error'`; 'skip' leaves them out, counted
  in `num_unknown_in_context` and logged), image ids absent from the images file. A bad payload is found when
  its item is built and names the instruction, the image id and the images file.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import random
import weakref

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..root import DATASETS, IMAGE_PLACEHOLDER
from ..single_image_dataset.base import MissingDataPathError, check_path
from ..utils.io import DataFileError, read_json

logger = logging.getLogger(__name__)

MEDIA_MODES = ('auto', 'video', 'images')
UNKNOWN_POLICIES = ('error', 'skip')
# Otter's video subsets (frames of one clip or scan per instruction), by instruction-id prefix.
VIDEO_PREFIXES = ('DC', 'TVC', 'E4D', 'SN', 'FunQA')
REQUIRED_FIELDS = ('instruction', 'answer', 'image_ids')
PARQUET_MAGIC = b'PAR1'


# -- images ----------------------------------------------------------------------------------------
def decode_image(payload: str) -> Image.Image:
    """A base64 string (standard or URL-safe alphabet, padding optional) -> RGB PIL image.

    Raises ValueError with the reason; the caller adds which sample and file it was."""
    if not isinstance(payload, str):
        raise ValueError(f"payload is a {type(payload).__name__}, expected a base64 string")
    # Otter writes standard base64 and reads it with urlsafe_b64decode, which accepts both alphabets.
    text = ''.join(payload.split()).replace('-', '+').replace('_', '/')
    try:
        data = base64.b64decode(text + '=' * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"not valid base64 ({e})") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a truncated payload fails here, not later in a worker
    except UnidentifiedImageError:
        raise ValueError(f"not a readable image ({len(data)} bytes in no image format PIL knows)") from None
    except (OSError, SyntaxError) as e:  # a known format whose data is cut short or corrupt
        raise ValueError(f"not a readable image ({len(data)} bytes: {e})") from None
    if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
        rgba = image.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert('RGB')
    return image.convert('RGB')


class ImagePayloads(dict):
    """{image_id: base64 string} of one images file (a dict subclass so that it can be weakly cached)."""

    path: str = ''


_PAYLOADS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _is_parquet(path: str) -> bool:
    if os.path.isdir(path):  # dask / pyarrow write a parquet data set as a folder of part files
        return True
    with open(path, 'rb') as f:
        return f.read(4) == PARQUET_MAGIC


def _read_parquet(path: str) -> dict:
    try:
        import pyarrow.parquet as pq  # optional: only parquet image files need it
    except ImportError:
        raise ImportError(f"images_file {path} is a parquet file; reading it needs pyarrow (pip install pyarrow), "
                          f"or give the flat base64 JSON {{image_id: base64}} instead") from None
    table = pq.read_table(path)
    names = table.column_names
    if 'base64' not in names:
        raise DataFileError(f"{path}: expected a 'base64' column (Otter's layout), found columns {names}")
    # pandas / dask store the DataFrame index (the image ids) as a column named in the pandas metadata.
    meta = table.schema.pandas_metadata or {}
    index = [c for c in meta.get('index_columns', []) if isinstance(c, str) and c in names]
    id_column = index[0] if index else next((c for c in ('image_id', 'id', 'key') if c in names), None)
    if id_column is None:
        raise DataFileError(f"{path}: no image-id column: expected the DataFrame index (pandas metadata) or a "
                            f"column 'image_id', found columns {names}")
    return dict(zip(table.column(id_column).to_pylist(), table.column('base64').to_pylist(), strict=True))


def load_payloads(path: str) -> ImagePayloads:
    """The images file at `path`, read once per process while any dataset holds it (subsets such as
    LADD and LACR_T2T share one LA file)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    cached = _PAYLOADS.get(key)
    if cached is not None:
        return cached
    if _is_parquet(path):
        mapping = _read_parquet(path)
    else:
        mapping = read_json(path)
        if not isinstance(mapping, dict):
            raise DataFileError(f"{path}: expected a JSON object {{image_id: base64 string}}, "
                                f"got a {type(mapping).__name__}")
    payloads = ImagePayloads(mapping)
    payloads.path = path
    _PAYLOADS[key] = payloads
    return payloads


# -- media layout ----------------------------------------------------------------------------------
def is_video_instruction(ins_id: str) -> bool:
    """Otter's rule (older MimicitDataset): the instruction id names a video subset, e.g. 'DC_INS_00001'."""
    return any(ins_id.startswith(prefix + '_') for prefix in VIDEO_PREFIXES)


def subsample_frames(frames: tuple, max_frames: int | None) -> tuple:
    """At most `max_frames` frames, evenly spaced, first and last kept (Otter: linspace(0, n-1, k) as int)."""
    n = len(frames)
    if max_frames is None or n <= max_frames:
        return frames
    if max_frames == 1:
        return frames[:1]
    return tuple(frames[k * (n - 1) // (max_frames - 1)] for k in range(max_frames))


def split_media(image_ids: list, video: bool, max_frames: int | None) -> tuple:
    """The media of one instruction: a tuple of (image_id, ...) tuples, one per media.

    A video is one media holding its frames; otherwise every image id is a media of its own."""
    if not image_ids:
        return ()
    if video:
        return (subsample_frames(tuple(image_ids), max_frames),)
    return tuple((image_id,) for image_id in image_ids)


# -- the dataset -----------------------------------------------------------------------------------
@DATASETS.register_module()
class MIMICITDataset(Dataset):
    """One MIMIC-IT subset; see the module docstring for the files, the item and the options.

    `records[ins_id]['video']` says whether the instruction's one media is a video: its frames are then
    returned as a list, even for a clip of a single frame."""

    epoch: int = 0

    def __init__(self, instructions_file: str, images_file: str | None = None, train_config_file: str | None = None,
                 num_in_context: int | None = None, media: str = 'auto', max_frames: int | None = None,
                 max_num_media: int | None = None, merge_repeated_media: bool = True,
                 unknown_in_context: str = 'error', seed: int = 0):
        if media not in MEDIA_MODES:
            raise ValueError(f"MIMICITDataset: media must be one of {list(MEDIA_MODES)}, got {media!r}")
        if unknown_in_context not in UNKNOWN_POLICIES:
            raise ValueError(f"MIMICITDataset: unknown_in_context must be one of {list(UNKNOWN_POLICIES)}, "
                             f"got {unknown_in_context!r}")
        for name, value, low in (('num_in_context', num_in_context, 0), ('max_frames', max_frames, 1),
                                 ('max_num_media', max_num_media, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ValueError(f"MIMICITDataset: {name} must be None or an integer >= {low}, got {value!r}")
        check_path(instructions_file, 'instructions_file')
        check_path(train_config_file, 'train_config_file')
        if images_file is not None and not os.path.exists(images_file):
            raise MissingDataPathError('images_file', images_file, 'file')
        self.instructions_file, self.images_file = instructions_file, images_file
        self.train_config_file = train_config_file
        self.num_in_context, self.media_mode, self.max_frames = num_in_context, media, max_frames
        self.max_num_media, self.merge_repeated_media, self.seed = max_num_media, merge_repeated_media, seed
        self.unknown_in_context, self.num_unknown_in_context = unknown_in_context, 0

        self.records = self._read_instructions(instructions_file)
        self.queries, candidates = self._read_queries(train_config_file)
        self.candidates = [self._known_candidates(q, c) for q, c in zip(self.queries, candidates, strict=True)]
        if self.num_unknown_in_context:
            logger.warning("%s: %d in-context id(s) not in the file were left out (unknown_in_context='skip')",
                           train_config_file or instructions_file, self.num_unknown_in_context)
        used = dict.fromkeys(self.queries)
        for ids in self.candidates:
            used.update(dict.fromkeys(ids))
        self._check_media_limit()
        self.payloads = self._load_images(images_file, list(used))

    # -- loading -------------------------------------------------------------------------------
    def _read_instructions(self, path: str) -> dict:
        doc = read_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get('data'), dict):
            got = f"an object with keys {sorted(doc)}" if isinstance(doc, dict) else f"a {type(doc).__name__}"
            raise DataFileError(f"{path}: expected {{\"meta\": {{...}}, \"data\": {{ins_id: instruction}}}}, got {got}")
        records = {}
        for ins_id, rec in doc['data'].items():
            where = f"{path}:{ins_id}"
            if not isinstance(rec, dict):
                raise DataFileError(f"{where}: expected an object, got a {type(rec).__name__}")
            missing = [k for k in REQUIRED_FIELDS if k not in rec]
            if missing:
                raise DataFileError(f"{where}: missing field(s) {missing}")
            texts = {}
            for key in ('instruction', 'answer'):
                value = rec[key]
                if not isinstance(value, str) or not value.strip():
                    raise DataFileError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
                # Otter strips both and unifies newlines before formatting; the text is otherwise kept.
                texts[key] = value.strip().replace('\r\n', '\n')
            for key in ('image_ids', 'rel_ins_ids'):
                value = rec.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise DataFileError(f"{where}: '{key}' must be a list of id strings, got {value!r}")
            video = self.media_mode == 'video' or (self.media_mode == 'auto' and is_video_instruction(ins_id))
            records[ins_id] = dict(texts, rel_ins_ids=rec.get('rel_ins_ids', []), video=video,
                                   media=split_media(rec['image_ids'], video, self.max_frames))
        return records

    def _read_queries(self, path: str | None) -> tuple[list, list]:
        if path is None:
            return list(self.records), [r['rel_ins_ids'] for r in self.records.values()]
        config = read_json(path)
        if not isinstance(config, dict):
            raise DataFileError(f"{path}: expected a JSON object {{ins_id: [in-context ins_id, ...]}}, "
                                f"got a {type(config).__name__}")
        for ins_id, ids in config.items():
            if ins_id not in self.records:
                raise DataFileError(f"{path}: query id {ins_id!r} is not in {self.instructions_file}")
            if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
                raise DataFileError(f"{path}:{ins_id}: expected a list of in-context ins ids, got {ids!r}")
        return list(config), list(config.values())

    def _known_candidates(self, query: str, ids: list) -> list:
        """The query's in-context candidates: known ids, each once, never the query itself."""
        out = []
        for ins_id in dict.fromkeys(ids):
            if ins_id == query:
                continue
            if ins_id not in self.records:
                if self.unknown_in_context == 'error':
                    raise DataFileError(f"{self.train_config_file or self.instructions_file}:{query}: in-context id "
                                        f"{ins_id!r} is not in {self.instructions_file} "
                                        f"(unknown_in_context='skip' leaves such ids out)")
                self.num_unknown_in_context += 1
                continue
            out.append(ins_id)
        return out

    def _check_media_limit(self) -> None:
        if self.max_num_media is None:
            return
        for ins_id in self.queries:
            count = len(self.records[ins_id]['media'])
            if count > self.max_num_media:
                raise DataFileError(f"{self.instructions_file}:{ins_id}: {count} media, more than "
                                    f"max_num_media={self.max_num_media} even without in-context examples")

    def _load_images(self, path: str | None, used: list) -> dict:
        needed = [(ins_id, image_id) for ins_id in used for m in self.records[ins_id]['media'] for image_id in m]
        if path is None:
            if needed:
                ins_id, image_id = needed[0]
                raise DataFileError(f"{self.instructions_file}:{ins_id}: has image {image_id!r} but no images_file "
                                    f"is given")
            return {}
        payloads = load_payloads(path)
        for ins_id, image_id in needed:
            if image_id not in payloads:
                raise DataFileError(f"{self.instructions_file}:{ins_id}: image id {image_id!r} is not in "
                                    f"images_file {path}")
        return payloads

    # -- items ---------------------------------------------------------------------------------
    def __len__(self):
        return len(self.queries)

    def set_epoch(self, epoch: int) -> None:
        """Draw `epoch`'s in-context examples (the choice is seeded by (seed, epoch, index))."""
        self.epoch = int(epoch)

    def in_context_ids(self, index: int) -> list:
        """The in-context example ids of query `index` this epoch, in the order they are shown."""
        candidates = self.candidates[index]
        n = len(candidates) if self.num_in_context is None else min(self.num_in_context, len(candidates))
        if n < len(candidates):
            # A string seed is hashed with SHA-512: the draw is the same in every process and run.
            rng = random.Random(f'mimicit-in-context:{self.seed}:{self.epoch}:{index}')
            chosen = [candidates[k] for k in sorted(rng.sample(range(len(candidates)), n))]
        else:
            chosen = list(candidates)
        query = self.queries[index]
        while chosen and self.max_num_media is not None and \
                len(self._layout([*chosen, query])[1]) > self.max_num_media:
            chosen.pop(0)  # the example farthest from the query goes first
        return chosen

    def _layout(self, ins_ids: list) -> tuple[list, list]:
        """(per instruction: the media it shows itself, all media in order), without decoding anything."""
        own, media, previous = [], [], None
        for ins_id in ins_ids:
            record = self.records[ins_id]
            mine = (record['video'], record['media'])
            shown = () if self.merge_repeated_media and record['media'] and mine == previous else record['media']
            if record['media']:  # a text-only turn between two turns on one video does not break the run
                previous = mine
            own.append(shown)
            media.extend(shown)
        return own, media

    def meta(self, index: int) -> dict:
        """{'ins_id', 'in_context_ids'} of query `index` this epoch; reads no image."""
        return {'ins_id': self.queries[index], 'in_context_ids': self.in_context_ids(index)}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.queries):
            raise IndexError(f"MIMICITDataset index {index} out of range for {len(self.queries)} queries")
        query = self.queries[index]
        examples = self.in_context_ids(index)
        ins_ids = [*examples, query]
        own, _ = self._layout(ins_ids)
        images, conversations = [], []
        for k, (ins_id, shown) in enumerate(zip(ins_ids, own, strict=True)):
            record = self.records[ins_id]
            images.extend(self._media(m, record['video'], ins_id, query) for m in shown)
            extra = {'in_context': True} if k < len(examples) else {}
            conversations.append({'from': 'human', 'value': IMAGE_PLACEHOLDER * len(shown) + record['instruction'],
                                  'boxes_seq': None, 'points_seq': None, **extra})
            conversations.append({'from': 'gpt', 'value': record['answer'], 'boxes_seq': None, 'points_seq': None,
                                  **extra})
        return {'image': images, 'target': {}, 'conversations': conversations,
                'source': f"{self.instructions_file}:{query}"}

    def _media(self, media: tuple, video: bool, ins_id: str, query: str):
        frames = []
        for image_id in media:
            try:
                frames.append(decode_image(self.payloads[image_id]))
            except ValueError as e:
                of = '' if ins_id == query else f" (in-context example of {query})"
                raise DataFileError(f"{self.instructions_file}:{ins_id}{of}: image id {image_id!r} in images_file "
                                    f"{self.images_file}: {e}") from None
        return frames if video else frames[0]
