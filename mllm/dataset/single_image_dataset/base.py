"""`AnnotationDataset`: the shared base of datasets read from one annotation file plus an image folder.

It checks that the paths exist (a missing one raises `MissingDataPathError` naming the argument,
which the builder turns into the config key to set), reads the records (JSONL by default, through
the byte-offset index `JsonlRecords`: parsed on access, each tagged with its `file:line` source), checks
required fields (at load without parsing, and again at access), draws question templates with an RNG
seeded by (seed, epoch, index) (`set_epoch`, forwarded by the mixtures and the conversation
wrapper, changes the phrasing each epoch), and reads images with errors that name the record.
`item_without_image(index)` builds the same item with a size-only stand-in for the image (for
cheap per-sample lengths, `mllm.dataset.lengths`). Subclasses implement
`build_item(index, record)` and, where a metric needs more than the reference text (e.g. the ten
VQAv2 answers), `meta(index)`: a small JSON-able dict read without opening the image.
"""
from __future__ import annotations

import os
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from contextlib import contextmanager
from numbers import Real

from torch.utils.data import Dataset

from ..root import IMAGE_PLACEHOLDER
from ..utils.io import DataFileError, read_image, read_jsonl
from ..utils.jsonl_index import JsonlRecords
from ..utils.question_templates import QuestionTemplates


class MissingDataPathError(DataFileError):
    """A configured file or folder does not exist; `key` is the dataset argument that names it."""

    def __init__(self, key: str, path: str, kind: str = 'file'):
        self.key, self.path, self.kind = key, path, kind
        super().__init__(f"{key}: {kind} not found: {path}")


def check_path(path: str | None, key: str, kind: str = 'file') -> None:
    """Raise MissingDataPathError unless `path` is an existing file (kind='file') or folder ('folder').

    Paths with a URL scheme (read through the optional storage backend) are not checked here.
    """
    if path is None or '://' in str(path):
        return
    exists = os.path.isdir(path) if kind == 'folder' else os.path.isfile(path)
    if not exists:
        raise MissingDataPathError(key, path, kind)


class ImageStandIn:
    """What `get_image` returns in image-free mode: the image's (width, height), no pixels.

    The size comes from the record's `width` / `height` when it has them, else (1, 1): normalised
    box text has a fixed length whatever the size (fixed-precision formatting).
    """

    __slots__ = ('size',)

    def __init__(self, size: tuple[int, int]):
        self.size = size

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def __repr__(self):
        return f'ImageStandIn(size={self.size})'


class AnnotationDataset(Dataset, metaclass=ABCMeta):
    """Records from `filename`, images from `image_folder`, questions from `template_file`.

    Class attributes a subclass sets:
      required_fields        fields every record must have (checked at load and at access, error names file:line)
      template_placeholders  placeholders every question template must contain (checked at load)
      records_in_memory      True: the default loader returns a list of dicts (for subclasses that
                             rewrite records at load) instead of `JsonlRecords` (a new dict per access)
    """

    required_fields: tuple[str, ...] = ()
    records_in_memory: bool = False
    template_placeholders: tuple[str, ...] = (IMAGE_PLACEHOLDER,)
    epoch: int = 0             # chooses the question phrasing with the seed; see set_epoch
    _image_free: bool = False  # get_image returns an ImageStandIn; see item_without_image

    def __init__(self, filename: str, image_folder: str | None = None, template_file: str | None = None,
                 seed: int = 0):
        check_path(filename, 'filename', 'file')
        check_path(image_folder, 'image_folder', 'folder')
        self.filename, self.image_folder, self.seed = filename, image_folder, seed
        self.records = self.load_records(filename)
        if isinstance(self.records, JsonlRecords):
            # A byte search, not a parse: keeps start-up short for million-line files.
            found = self.records.missing_fields(self.required_fields)
            if found:
                index, missing = found[0]
                raise DataFileError(f"{self.records.source(index)}: missing field(s) {missing}")
        else:
            for record in self.records:
                self.check_fields(record)
        self.templates = (QuestionTemplates(template_file, required=self.template_placeholders, seed=seed)
                          if template_file else None)

    # -- hooks for subclasses ------------------------------------------------------------------
    def load_records(self, filename: str) -> Sequence[dict]:
        """Records with a `__source__` tag each; JSONL unless a subclass reads another layout."""
        if self.records_in_memory:
            return read_jsonl(filename)
        # Checking the fields at each access too covers subclasses' own passes over the records.
        return JsonlRecords(filename, required=self.required_fields)

    @abstractmethod
    def build_item(self, index: int, record: dict) -> dict:
        """The canonical item (DESIGN.md section 4) of `record`, the `index`-th record."""

    def meta(self, index: int) -> dict:
        """Extra per-sample facts a metric needs (JSON-able, no image loading); none by default."""
        return {}

    # -- shared helpers ------------------------------------------------------------------------
    def __len__(self):
        return len(self.records)

    def check_fields(self, record: dict) -> None:
        """Raise DataFileError naming the record's source unless it has every required field."""
        missing = [k for k in self.required_fields if k not in record]
        if missing:
            raise DataFileError(f"{record.get('__source__', self.filename)}: missing field(s) {missing}")

    def __getitem__(self, index):
        record = self.records[index]
        # The load-time byte check passes a key found only as a value: this catches such a record.
        self.check_fields(record)
        item = self.build_item(index, record)
        item.setdefault('source', record.get('__source__'))
        return item

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch`'s question phrasings (the seeded choice is per (seed, epoch, index))."""
        self.epoch = int(epoch)

    @contextmanager
    def without_images(self):
        """Within this block `get_image` opens no file and returns an `ImageStandIn`."""
        previous, self._image_free = self._image_free, True
        try:
            yield self
        finally:
            self._image_free = previous

    def item_without_image(self, index: int) -> dict:
        """Item `index` as `self[index]` builds it, with an `ImageStandIn` where the image would be."""
        with self.without_images():
            return self[index]

    def get_image(self, record: dict, key: str = 'img_path'):
        """Open `image_folder/record[key]`; errors name the record's source."""
        if self._image_free:
            width, height = record.get('width'), record.get('height')
            ok = all(isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in (width, height))
            return ImageStandIn((width, height) if ok else (1, 1))
        path = record[key] if self.image_folder is None else os.path.join(self.image_folder, record[key])
        try:
            return read_image(path)
        except DataFileError as e:
            raise DataFileError(f"{record.get('__source__', self.filename)}: {e}") from None

    def question(self, index: int, replacements: dict[str, str] | None = None) -> str:
        """The seeded template of sample `index` with placeholders replaced, e.g. {'<expr>': 'a dog'}."""
        if self.templates is None:
            raise ValueError(f"{type(self).__name__} needs a template_file")
        text = self.templates.get(index, self.epoch)
        for placeholder, value in (replacements or {}).items():
            text = text.replace(placeholder, value)
        return text
