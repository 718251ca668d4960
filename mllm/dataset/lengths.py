"""Per-sample token counts without opening images, and a sampler that groups batches by them.

Convention (LLaVA's `modality_lengths`): a length is the estimated number of tokens a sample
renders to (text tokens plus `num_image_tokens` per image); it is positive for a sample with
images and NEGATIVE for a text-only one. A length is never 0.

- `conv_dataset_lengths(conv_ds)`: lengths of a `SingleImageConvDataset`. Items are built in the
  raw dataset's image-free mode (`AnnotationDataset.item_without_image`: the subclass's own
  `build_item` runs, `get_image` returns a size-only stand-in), rendered with the dataset's box
  formatter and conversation template (no transform: fixed-precision box text has the same length
  whatever the image size), and tokenised in batches. Exact (tested) when the tokenizer splits
  digits, as LLaMA's does; otherwise the box digits may merge differently, a few tokens per box.
  The question phrasing is that of the raw dataset's current epoch. Cost on a shared 2-core CPU
  (tiny fast tokenizer, REC records): 7-13 s per 100k samples with the tokenizer (3 s of it
  building and rendering items), 3-4 s with `chars_per_token`; `__getitem__` takes 80-300 s. A raw
  dataset without the image-free mode has its items built normally, opening every image.
- `dataset_lengths(dataset)`: walks the mixtures (each has `lengths()`: its members' lengths read
  through its index table) down to the conversation datasets; a leaf's lengths are computed once
  per object and remembered, so a mixture's lengths after `set_epoch` cost numpy gathers only.
- `ModalityLengthGroupedSampler`: an epoch order in which samples of similar length share a batch
  and image / text-only samples never do (but at the epoch's very end), seeded by (seed, epoch).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from torch.utils.data import Sampler

from .root import IMAGE_PLACEHOLDER
from .single_image_conversation import item_images
from .utils.mixture import ConcatDataset, HoldoutSplit, InterleaveDataset, SubsetDataset

MIXTURES = (ConcatDataset, InterleaveDataset, SubsetDataset, HoldoutSplit)


def build_item_without_image(raw, index: int) -> dict:
    """The raw dataset's item `index`, image-free when the dataset offers it (else built normally)."""
    build = getattr(raw, 'item_without_image', None)
    return build(index) if build is not None else raw[index]


def rendered_text(conv_ds, item: dict, index: int) -> tuple[str, int]:
    """(the text `conv_ds` tokenises for `item`, its number of images); the steps of its `process`."""
    images = item_images(item)
    _, boxes, points = conv_ds.transform_images(images, item.get('target') or {}, apply_transform=False)
    conversations = conv_ds.format_targets(item['conversations'], boxes, points)
    conversations = conv_ds._ensure_image_placeholders(conversations, len(images), f"{conv_ds.name}[{index}]")
    text, _, _ = conv_ds.template.render(conversations, for_generation=conv_ds.mode == 'eval')
    return text, len(images)


def _token_counts(conv_ds, texts: list[str]) -> np.ndarray:
    """Tokens of each text as `conv_ds` encodes it (BOS once), each image placeholder counted as one."""
    tok, bos = conv_ds.tokenizer, conv_ds.tokenizer.bos_token_id
    backend = getattr(tok, 'backend_tokenizer', None)
    if hasattr(backend, 'encode_batch_fast'):  # the Rust tokenizer without offsets: ~2x faster than tok(texts)
        batch = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    else:
        batch = tok(texts, add_special_tokens=False)['input_ids']
    counts = np.empty(len(texts), dtype=np.int64)
    for k, ids in enumerate(batch):
        counts[k] = len(ids) + (bos is not None and (not ids or ids[0] != bos))
    return counts


def conv_dataset_lengths(conv_ds, chars_per_token: float | None = None, batch_size: int = 1024) -> np.ndarray:
    """Estimated tokens per sample of `conv_ds` (negative: text-only), an int64 array.

    conv_ds: a SingleImageConvDataset (or an object with its `dataset`, `tokenizer`, `template`,
    `num_image_tokens`, `mode`, `name`, `max_length`, `format_targets`, `_ensure_image_placeholders`).
    chars_per_token: None counts text tokens with the dataset's tokenizer, in batches of `batch_size`
    (exact for a tokenizer that keeps `<image>` one token); a number estimates them as
    ceil(characters / chars_per_token) instead. Training samples are capped at `max_length`, as
    `tokenize` truncates them.
    """
    n = len(conv_ds.dataset)
    lengths, num_images = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        texts = []
        for i in range(start, min(n, start + batch_size)):
            text, num_images[i] = rendered_text(conv_ds, build_item_without_image(conv_ds.dataset, i), i)
            texts.append(text)
        stop = start + len(texts)
        if chars_per_token is None:
            lengths[start:stop] = _token_counts(conv_ds, texts)
        else:  # placeholders become image tokens below; BOS is one more token
            chars = np.array([len(t) - t.count(IMAGE_PLACEHOLDER) * len(IMAGE_PLACEHOLDER) for t in texts])
            lengths[start:stop] = np.ceil(chars / chars_per_token).astype(np.int64) + 1 + num_images[start:stop]
    lengths += num_images * (conv_ds.tokens_per_image - 1)  # each placeholder token becomes tokens_per_image
    if conv_ds.mode == 'train' and getattr(conv_ds, 'max_length', None):
        lengths = np.minimum(lengths, conv_ds.max_length)
    lengths = np.maximum(lengths, 1)
    return np.where(num_images > 0, lengths, -lengths)


_LEAF_LENGTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dataset_lengths(dataset) -> np.ndarray:
    """Lengths (see the module docstring) of every position of a mixture or a conversation dataset."""
    if isinstance(dataset, MIXTURES):
        return dataset.lengths()  # not remembered: its table may change with the epoch
    try:
        cached, cacheable = _LEAF_LENGTHS.get(dataset), True
    except TypeError:  # unhashable or not weakly referenceable: computed each time
        cached, cacheable = None, False
    if cached is not None:
        return cached
    if hasattr(dataset, 'lengths'):
        out = np.asarray(dataset.lengths(), dtype=np.int64)
    elif all(hasattr(dataset, a) for a in ('dataset', 'template', 'tokenizer', 'num_image_tokens')):
        out = conv_dataset_lengths(dataset)
    else:
        raise TypeError(f"dataset_lengths: {type(dataset).__name__} has no lengths() and is not a conversation "
                        f"dataset; length-grouped sampling needs one of them")
    if out.shape != (len(dataset),):
        raise ValueError(f"dataset_lengths: {type(dataset).__name__} gave {out.shape} lengths for {len(dataset)} items")
    if cacheable:
        _LEAF_LENGTHS[dataset] = out
    return out


def modality_length_grouped_indices(lengths: np.ndarray, batch_size: int, world_size: int,
                                    rng: np.random.Generator, mega: int = 50) -> np.ndarray:
    """One epoch's order of range(len(lengths)); see ModalityLengthGroupedSampler."""
    lengths = np.asarray(lengths)
    step = batch_size * world_size  # one optimizer micro-step over all ranks
    size = abs(lengths)
    units, tails = [], []
    for kind in (lengths > 0, lengths < 0):  # images, then text-only
        order = rng.permutation(np.flatnonzero(kind))
        full = len(order) // step * step
        for start in range(0, full, step * mega):  # one loop per megabatch, not per sample
            megabatch = order[start:min(full, start + step * mega)]
            units.append(megabatch[np.argsort(-size[megabatch], kind='stable')])
        tail = order[full:]  # fewer than one step of this kind: kept for the end
        if len(tail):
            tails.append(tail[np.argsort(-size[tail], kind='stable')])
    # Every unit is a whole number of steps, so shuffling units keeps each batch on one modality.
    shuffled = [units[u] for u in rng.permutation(len(units))]
    return np.concatenate(shuffled + tails) if shuffled or tails else np.zeros(0, dtype=np.int64)


class ModalityLengthGroupedSampler(Sampler[int]):
    """Length-grouped, modality-pure order over a dataset, the same on every rank; `set_epoch` redraws it.

    lengths: per-sample lengths (negative: text-only, as `dataset_lengths` returns), or a
      zero-argument callable returning them, re-read at every epoch (for mixtures whose table
      changes with the epoch; the number of samples may not change).
    batch_size: per-device batch size; world_size: number of processes; seed: with the epoch, seeds
      the order (numpy, no global RNG, so every rank draws the same one).
    mega: a megabatch holds `batch_size * world_size * mega` samples.

    Each epoch: image and text-only samples are shuffled apart and cut into megabatches; inside a
    megabatch samples are sorted by length, longest first; the megabatches of both kinds are
    shuffled together. A megabatch is a whole number of steps (`batch_size * world_size` samples),
    so every batch on every rank holds one kind only, except where the leftovers of the two kinds
    (fewer than one step each) meet at the end of the epoch: at most one batch there mixes them.
    Like torch's samplers the whole order is yielded; the distributed data loader hands each rank
    its batches (batch k goes to rank k % world_size).
    """

    def __init__(self, lengths: np.ndarray | Callable[[], np.ndarray], batch_size: int, world_size: int = 1,
                 seed: int = 0, mega: int = 50):
        if batch_size < 1 or world_size < 1 or mega < 1:
            raise ValueError(f"batch_size, world_size and mega must be >= 1, got {batch_size}, {world_size}, {mega}")
        self._source = lengths if callable(lengths) else None
        self.batch_size, self.world_size, self.seed, self.mega = batch_size, world_size, seed, mega
        self.epoch = 0
        self.lengths = self._read(None if callable(lengths) else lengths)

    def _read(self, lengths=None) -> np.ndarray:
        out = np.asarray(self._source() if lengths is None else lengths, dtype=np.int64)
        if out.ndim != 1 or (out == 0).any():
            raise ValueError('ModalityLengthGroupedSampler: lengths must be a 1-D array of non-zero ints '
                             '(negative for text-only samples)')
        if hasattr(self, 'lengths') and len(out) != len(self.lengths):
            raise ValueError(f"ModalityLengthGroupedSampler: the dataset changed from {len(self.lengths)} to "
                             f"{len(out)} samples")
        return out

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.lengths)

    def indices(self) -> np.ndarray:
        """This epoch's order as an array."""
        if self._source is not None:
            self.lengths = self._read()
        rng = np.random.default_rng([self.seed, self.epoch])
        return modality_length_grouped_indices(self.lengths, self.batch_size, self.world_size, rng, self.mega)

    def __iter__(self):
        return iter(self.indices().tolist())

