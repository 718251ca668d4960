"""`SingleImageConvDataset`: one canonical item -> the tensors a LLaVA-style model consumes.

Steps per item: validate -> transform (expand to square, boxes shifted) -> normalise boxes/points
and write them into the text -> fill the conversation template -> tokenise (the tokenizer's BOS
added exactly once, by us) -> mask labels -> expand each `<image>` into the model's number of image
tokens -> process the images. An item may hold zero images (`'image': []`, text-only
conversations), one, or several; every image is transformed and processed on its own.

Labels come from character spans (the template marks the assistant answers) mapped onto tokens
through the tokenizer's offsets, so masking never depends on re-tokenising pieces of the prompt.

Bad samples:
- training: a sample whose answer cannot be mapped onto tokens, or loses all its answer tokens to
  truncation, is replaced by the next one, logged by name and counted in `skipped`; never trained on
  as all -100. Other malformed items raise.
- evaluation/prediction: never substituted (the prediction of sample i must be scored against
  sample i). `on_bad_sample='raise'` (default) raises an error naming the sample;
  `on_bad_sample='skip'` returns a one-token stand-in marked with `skipped` (the reason), which the
  trainer writes as `{"id": i, "skipped": reason}` and counts in `<prefix>_skipped`.
"""
from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

from .process_function.conv_template import get_conv_template
from .root import IGNORE_INDEX, IMAGE_PLACEHOLDER, TRANSFORMS
from .utils.io import DataFileError
from .utils.transform import norm_box_xyxy, norm_point_xy
from .validation import InvalidSampleError, validate_item

logger = logging.getLogger(__name__)

BAD_SAMPLE_POLICIES = ('raise', 'skip')


class MisalignedSampleError(InvalidSampleError):
    """The assistant answer of a sample cannot be mapped onto whole tokens."""


class TooLongError(InvalidSampleError):
    """A sample does not fit `max_length` and may not be truncated (image tokens, a prompt, an episode)."""


def item_images(item: dict) -> list:
    """The images of an item as a list: [] for a text-only item (`image` missing, None or [])."""
    image = item.get('image')
    if image is None:
        return []
    return list(image) if isinstance(image, (list, tuple)) else [image]


class SingleImageConvDataset(Dataset):
    """Wrap a raw dataset of canonical items and render them for one model (LLaVA-style by default).

    mode: 'train' -> input_ids/labels over the whole conversation;
          'eval'  -> prompt ending with the assistant role, `labels` holds the reference answer.
    preprocessor: dict with `text` (tokenizer), `image` (image processor), `target` (box
    formatter), `num_image_tokens`, `image_token` and optionally `image_wrap` (start, end): tokens written
    around every image's tokens (Shikra / LCL / LLaVA-v0: `<im_start>` + `<im_patch>` x n + `<im_end>`).
    on_bad_sample: what evaluation does with a sample that cannot be rendered ('raise' | 'skip').
    in_context_loss: whether the answers of in-context examples (turns marked `in_context`) carry loss;
    by default only the query's answer does.
    reduce_shots_to_fit: an in-context episode is never truncated (that would cut the query); in training,
    an episode longer than max_length is rebuilt with fewer shots per concept (raw datasets with
    `item_with_shots`, e.g. ISEKAI / LCL episodes) until it fits, logged and counted in `reduced`; in
    evaluation, or when even one shot does not fit, it is a TooLongError naming the sample.
    token_cache: a directory for the persistent tokenisation cache (dataset/token_cache.py); None: off.
    """

    accepts_video = False  # a media given as a list of frames (Flamingo-style renderers accept it)

    def __init__(self, dataset, preprocessor: dict, mode: str = 'train', name: str | None = None,
                 conv_template: str = 'vicuna_v1.1', conv_overrides: dict | None = None,
                 transform: dict | None = None, max_length: int = 2048, box_tolerance: float = 1.0,
                 on_bad_sample: str = 'raise', in_context_loss: bool = False, reduce_shots_to_fit: bool = True,
                 token_cache: str | None = None):
        if mode not in ('train', 'eval'):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}")
        self.dataset = dataset
        self.mode = mode
        self.name = name or type(dataset).__name__
        self.tokenizer = preprocessor['text']
        self.image_processor = preprocessor['image']
        self.formatter = preprocessor['target']
        self.num_image_tokens = preprocessor['num_image_tokens']
        self.image_token = preprocessor.get('image_token', IMAGE_PLACEHOLDER)
        self.image_token_id = self._token_id(self.image_token)
        wrap = preprocessor.get('image_wrap')
        self.image_wrap_ids = tuple(self._token_id(t) for t in wrap) if wrap else ()
        self.template = get_conv_template(conv_template, **(conv_overrides or {}))
        # Checked here, at load: generation must be able to stop where the template ends a turn.
        self.stop_token_ids = self.template.resolve_stop_token_ids(self.tokenizer)
        self.bos_token_id = self.tokenizer.bos_token_id
        self.transform = TRANSFORMS.build(transform) if transform else None
        self.max_length = max_length
        self.box_tolerance = box_tolerance
        self.on_bad_sample = on_bad_sample
        self.in_context_loss = in_context_loss
        self.reduce_shots_to_fit = reduce_shots_to_fit
        self.reduced: list[str] = []
        self.skipped: list[str] = []
        self.token_cache = None
        if token_cache is not None:
            from .token_cache import TokenCache, dataset_namespace

            self.token_cache = TokenCache(token_cache, dataset_namespace(self)[0])

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no '{token}' token")
        return token_id

    @property
    def tokens_per_image(self) -> int:
        """Sequence positions one image takes: its image tokens plus the wrap tokens around them."""
        return self.num_image_tokens + len(self.image_wrap_ids)

    def __len__(self):
        return len(self.dataset)

    def meta(self, index: int) -> dict:
        """The raw dataset's per-sample facts for metrics (e.g. all VQAv2 answers); {} if it has none."""
        return self.dataset.meta(index) if hasattr(self.dataset, 'meta') else {}

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the raw dataset (question phrasings are drawn per epoch)."""
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(epoch)

    def lengths(self):
        """Estimated tokens per sample without opening images (negative: text-only); see dataset/lengths.py."""
        from .lengths import conv_dataset_lengths  # lazily: only length-grouped sampling needs it

        return conv_dataset_lengths(self)

    def __getitem__(self, index):
        if not 0 <= index < len(self):  # no wrap-around: iteration must end, samplers must not hang
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        if self.mode == 'eval':
            return self._eval_sample(index)
        # Training: a misaligned sample is replaced by the next one (deterministically) and recorded.
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            try:
                return self.process(i)
            except MisalignedSampleError as e:
                self.skipped.append(str(e))
                logger.warning('skipping sample: %s (skipped so far: %d)', e, len(self.skipped))
        raise RuntimeError(f"{self.name}: every sample was skipped as misaligned")

    def _eval_sample(self, index: int) -> dict:
        try:
            return self.process(index)
        except (InvalidSampleError, DataFileError) as e:
            if self.on_bad_sample == 'raise':
                raise type(e)(f"{e} (evaluation never substitutes a sample; set data_args.on_bad_sample='skip' to "
                              f"record it as skipped instead)") from None
            logger.warning('evaluation: skipping %s', e)
            return self.skipped_sample(str(e))

    def skipped_sample(self, reason: str) -> dict:
        """A one-token stand-in that keeps the sample's place in the batch; its prediction is discarded."""
        first = self.bos_token_id if self.bos_token_id is not None else self.tokenizer.pad_token_id
        return {'input_ids': torch.tensor([first], dtype=torch.long), 'pixel_values': None,
                'labels': torch.zeros(0, dtype=torch.long), 'skipped': reason}

    # -- steps ---------------------------------------------------------------------------------
    def process(self, index: int) -> dict:
        item = self.dataset[index]
        try:
            return self.render_item(item, index)
        except TooLongError as e:
            if self.mode != 'train' or not self.reduce_shots_to_fit or not hasattr(self.dataset, 'item_with_shots'):
                raise
            return self._with_fewer_shots(index, e)

    def _with_fewer_shots(self, index: int, error: TooLongError) -> dict:
        shot = int(self.dataset.meta(index)['shot'])
        for fewer in range(shot - 1, 0, -1):
            try:
                sample = self.render_item(self.dataset.item_with_shots(index, fewer), index)
            except TooLongError:
                continue
            self.reduced.append(f"{self.name}[{index}]: {shot} -> {fewer} shots")
            logger.warning('%s[%d]: episode of %d shots exceeds max_length=%d; trained with %d shots (reduced so far: '
                           '%d)', self.name, index, shot, self.max_length, fewer, len(self.reduced))
            return sample
        raise TooLongError(f"{error}; even 1 shot per concept does not fit") from None

    def render_item(self, item: dict, index: int) -> dict:
        """The model inputs of one canonical item (`index` names it in errors)."""
        images = item_images(item)
        where = f"{self.name}[{index}]" + (f" ({item['source']})" if item.get('source') else '')
        if not self.accepts_video and any(isinstance(image, (list, tuple)) for image in images):
            raise InvalidSampleError(f"{where}: a video media (a list of frames) cannot be rendered for LLaVA-style "
                                     f"models; use a Flamingo-family model")
        validate_item(item, self.name, index,
                      image_sizes=[(m[0] if isinstance(m, (list, tuple)) else m).size for m in images],
                      box_tolerance=self.box_tolerance)
        target = item.get('target') or {}
        if not images and (target.get('boxes') or target.get('points')):
            raise InvalidSampleError(f"{where}: boxes/points given but the item has no image to refer to")
        images, boxes, points = self.transform_images(images, target)
        if self.mode == 'train' and any(t['from'] == 'gpt' and not t['value'].strip() for t in item['conversations']):
            raise InvalidSampleError(f"{where}: an assistant turn is empty, nothing to train on (prediction-only "
                                     f"datasets such as PureVQADataset belong in test/multitest, not train)")
        conversations = self.format_targets(item['conversations'], boxes, points)
        conversations = self._ensure_image_placeholders(conversations, len(images), where)
        if self.image_token != IMAGE_PLACEHOLDER:  # e.g. Shikra's '<im_patch>': the tokenizer's own image token
            conversations = [dict(t, value=t['value'].replace(IMAGE_PLACEHOLDER, self.image_token))
                             for t in conversations]
        if not self.in_context_loss:
            conversations = [dict(t, loss=False) if t.get('in_context') and t['from'] == 'gpt' else t
                             for t in conversations]
        text, spans, reference = self.template.render(conversations, for_generation=self.mode == 'eval')
        # Evaluation: earlier answers are context, not targets; their token alignment does not matter.
        episode = any(t.get('in_context') for t in conversations)
        input_ids, labels = self.tokenize(text, spans if self.mode == 'train' else [], where, truncate=not episode)
        sample = {'input_ids': input_ids, 'pixel_values': self.process_images(images)}
        if self.mode == 'train':
            sample['labels'] = labels
        else:
            sample['labels'] = self.reference_ids(reference)
        return sample

    def process_images(self, images) -> torch.Tensor | None:
        """(num_images, C, H, W), each image processed on its own; None for a text-only sample."""
        if not images:
            return None
        return torch.cat([self.image_processor(images=image, return_tensors='pt')['pixel_values'] for image in images])

    def transform_images(self, images, target, apply_transform: bool = True):
        """(images, normalised boxes, normalised points): every image transformed on its own, with the boxes
        and points drawn on it (`target['boxes_image']` / `points_image`, image 0 when absent), each
        normalised by the size of its own transformed image; boxes and points keep their order.
        apply_transform=False (length estimates, size-only image stand-ins) normalises by the original sizes."""
        boxes, points = list(target.get('boxes') or []), list(target.get('points') or [])
        box_owner = target.get('boxes_image') or [0] * len(boxes)
        point_owner = target.get('points_image') or [0] * len(points)
        out_images, out_boxes, out_points = [], [None] * len(boxes), [None] * len(points)
        for k, image in enumerate(images):
            mine_b = [i for i, o in enumerate(box_owner) if o == k]
            mine_p = [i for i, o in enumerate(point_owner) if o == k]
            own = {'boxes': [boxes[i] for i in mine_b], 'points': [points[i] for i in mine_p]}
            if self.transform is not None and apply_transform:
                image, shifted = self.transform(image, own)
                own = shifted or own
            width, height = image.size
            for i, box in zip(mine_b, own['boxes'], strict=True):
                out_boxes[i] = norm_box_xyxy(box, width, height)
            for i, point in zip(mine_p, own['points'], strict=True):
                out_points[i] = norm_point_xy(point, width, height)
            out_images.append(image)
        return out_images, out_boxes, out_points

    def format_targets(self, conversations, boxes, points):
        """Boxes and points (normalised) written into the turns' `<boxes>` / `<points>` placeholders."""
        return [dict(turn, value=self.formatter(turn['value'], turn.get('boxes_seq'), turn.get('points_seq'),
                                                boxes, points)) for turn in conversations]

    @staticmethod
    def _ensure_image_placeholders(conversations, num_images, where):
        found = sum(turn['value'].count(IMAGE_PLACEHOLDER) for turn in conversations)
        if found == 0 and num_images:
            # LLaVA convention: a conversation without the placeholder sees its image(s) first.
            first = dict(conversations[0], value=IMAGE_PLACEHOLDER * num_images + ' ' + conversations[0]['value'])
            return [first, *conversations[1:]]
        if found != num_images:
            raise InvalidSampleError(f"{where}: {found} {IMAGE_PLACEHOLDER} placeholders for {num_images} images")
        return conversations

    def _encode(self, text: str):
        """(ids, offsets) with the tokenizer's BOS exactly once at the start.

        The tokenizer's own special-token post-processing is off (some tokenizers saved with LLaVA
        checkpoints add no BOS, others add BOS and EOS); the BOS is prepended here instead, unless the
        text itself already starts with it.
        """
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        ids, offsets = list(enc['input_ids']), list(enc['offset_mapping'])
        if self.bos_token_id is not None and (not ids or ids[0] != self.bos_token_id):
            ids, offsets = [self.bos_token_id, *ids], [(0, 0), *offsets]
        return ids, offsets

    def reference_ids(self, reference: str) -> torch.Tensor:
        """The evaluation reference's ids (no special tokens), through the token cache when there is one."""
        cache = self.token_cache
        key = cache.key('reference', reference) if cache is not None else None
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit[0]
        ids = torch.tensor(self.tokenizer(reference, add_special_tokens=False)['input_ids'], dtype=torch.long)
        if cache is not None:
            cache.put(key, ids, ids[:0])
        return ids

    def tokenize(self, text: str, spans, where: str, truncate: bool = True):
        """(input_ids, labels) of a rendered text; read from / written to the token cache when there is one."""
        cache = self.token_cache
        if cache is None:
            return self._tokenize(text, spans, where, truncate)
        key = cache.key('sample', text, [list(s) for s in spans], self.mode, bool(truncate))
        hit = cache.get(key)
        if hit is not None:
            return hit
        input_ids, labels = self._tokenize(text, spans, where, truncate)  # an error raises before any put
        cache.put(key, input_ids, labels)
        return input_ids, labels

    def _tokenize(self, text: str, spans, where: str, truncate: bool = True):
        ids, offsets = self._encode(text)
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in spans:
            hit = None
            for t, (s, e) in enumerate(offsets):
                if e <= s or e <= start or s >= end:
                    continue
                if text[s:start].strip():
                    raise MisalignedSampleError(
                        f"{where}: token {self.tokenizer.convert_ids_to_tokens(ids[t])!r} spans both prompt "
                        f"and answer text; the answer cannot be masked exactly")
                labels[t] = ids[t]
                hit = t
            if hit is None:
                raise MisalignedSampleError(f"{where}: the answer at characters {start}-{end} maps to no token")
            if ids[hit] not in self.stop_token_ids:
                # The model would learn to end its answers with a token generation does not stop at.
                raise MisalignedSampleError(
                    f"{where}: the answer ends with token {self.tokenizer.convert_ids_to_tokens(ids[hit])!r}, not "
                    f"with the template's end of turn {self.template.end_of_turn!r} (ids {self.stop_token_ids})")
        ids, labels = self._expand_image_tokens(ids, labels)
        if len(ids) > self.max_length:
            image_positions = [t for t, v in enumerate(ids) if v == self.image_token_id]
            if image_positions and image_positions[-1] >= self.max_length:
                raise TooLongError(
                    f"{where}: {len(ids)} tokens with image tokens up to position {image_positions[-1]} do not fit "
                    f"max_length={self.max_length}; raise max_length (truncation never cuts image tokens)")
            if self.mode == 'eval' or not truncate:
                what = 'prompt' if self.mode == 'eval' else 'episode (never truncated: the query would be cut)'
                raise TooLongError(f"{where}: the {what} has {len(ids)} tokens, more than max_length={self.max_length}")
            ids, labels = ids[:self.max_length], labels[:self.max_length]
            if all(v == IGNORE_INDEX for v in labels):
                raise MisalignedSampleError(
                    f"{where}: truncation to {self.max_length} tokens removed every answer token")
        return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)

    def _expand_image_tokens(self, ids, labels):
        out_ids, out_labels = [], []
        for v, lab in zip(ids, labels, strict=True):
            if v == self.image_token_id:
                image_ids = [v] * self.num_image_tokens
                if self.image_wrap_ids:
                    image_ids = [self.image_wrap_ids[0], *image_ids, self.image_wrap_ids[1]]
                out_ids.extend(image_ids)
                out_labels.extend([IGNORE_INDEX] * len(image_ids))
            else:
                out_ids.append(v)
                out_labels.append(lab)
        return out_ids, out_labels
