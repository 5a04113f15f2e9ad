"""Built-in localization benchmarks as ``torch.utils.data.Dataset``: lesions, concepts, digits.

They stand in for the LAP paper's datasets (Sec. 4: RSNA pneumonia with expert boxes, CelebA
smile with concept heads, ImageNet), small enough to train on a CPU in minutes, with exact
region ground truth. Rendering lives in ``torchlap.data._render`` (see its docstring for the
determinism guarantees).

Indexing. A benchmark of ``n_images`` images has global indices ``0 .. n_images - 1``,
split into contiguous ranges: train ``[0, n_train)``, val ``[n_train, n_train + n_val)``, test
the rest, with ``(n_train, n_val, n_test) = split_counts(n_images, split_fractions)``.
Global image ``i`` is a pure function of ``(benchmark, seed, i, image_size)`` (``digits``: also
of its split), so it does not change with ``n_images`` as long as it stays in the same split.
Labels are ``i mod num_classes``, so every split is class-balanced; an ``n_images`` whose
train split is shorter than the number of classes is refused (ValueError saying the smallest
``n_images`` that works: 12 for ``digits`` with the default fractions), since its last classes
would have no training image. The split stays contiguous (not re-stratified) so that the
images of every split of a valid size stay the same.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from torchlap._checks import check_int, check_seed
from torchlap.data._base import (
    SPLITS,
    RegionDataset,
    Sample,
    apply_transform,
    check_split,
    check_split_fractions,
    check_transform,
    make_sample,
    split_counts,
)
from torchlap.data._render import GeneratedBatch
from torchlap.data._render_concepts import (
    MAX_CONCEPT_CLASSES,
    concept_class_names,
    render_concepts,
)
from torchlap.data._render_digits import DIGIT_CLASSES, render_digits
from torchlap.data._render_lesions import LESION_CLASSES, render_lesions

logger = logging.getLogger(__name__)

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
DEFAULT_N_IMAGES = 2000
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_STATS_IMAGES = 256  # images used to estimate the normalization statistics
_CHUNK = 256  # images generated (and cached) at once
# the most images a built-in benchmark has (all splits): 10x ImageNet's validation set at the
# smallest size is days of CPU time and tens of GB of PNGs; a bigger count is a typo
MAX_N_IMAGES = 1_000_000


def _min_images(n_classes: int, fractions: tuple[float, float, float]) -> int:
    """The smallest ``n_images`` whose train split holds one image of every class."""
    bound = math.ceil((n_classes + 1) / fractions[0]) + 1  # n * f - 1 >= n_classes: enough
    for n in range(n_classes, min(bound, n_classes + 100_000)):
        if split_counts(n, fractions)[0] >= n_classes:
            return n
    return bound


class SyntheticBenchmark(RegionDataset):
    """Base class of the built-in benchmarks: split bookkeeping, chunked generation, cache.

    Images are generated lazily in chunks of 256 on first access and cached in memory as
    uint8 (64x64x3 is 12 KiB per image). ``mean``/``std`` are estimated on the first (up to)
    256 training images, the same whichever split is loaded.
    """

    name: str = ""
    class_names: tuple[str, ...] = ()
    channels: int = 1

    def __init__(
        self,
        split: str = "train",
        n_images: int = DEFAULT_N_IMAGES,
        image_size: int = 64,
        split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
        seed: int = 0,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.split = check_split(split)
        check_int(n_images, "n_images", minimum=1, maximum=MAX_N_IMAGES)
        check_int(
            image_size,
            "image_size of the built-in benchmarks (square images)",
            minimum=MIN_IMAGE_SIZE,
            maximum=MAX_IMAGE_SIZE,
        )
        check_seed(seed)
        self.split_fractions = check_split_fractions(split_fractions)
        self.n_images = n_images
        self.size = image_size
        self.image_size = (image_size, image_size)
        self.seed = seed
        check_transform(transform)
        self.transform = transform
        self.classes = list(self.class_names)
        self.n_channels = self.channels
        counts = split_counts(n_images, self.split_fractions)
        starts = [0, counts[0], counts[0] + counts[1]]
        self.split_sizes = dict(zip(SPLITS, counts, strict=True))
        self.offset = starts[SPLITS.index(split)]
        self.length = counts[SPLITS.index(split)]
        if self.length == 0:
            raise ValueError(
                f"the {split!r} split of {self.name} is empty with n_images={n_images} and "
                f"split_fractions={self.split_fractions}; use more images or a larger fraction"
            )
        if counts[0] < len(self.classes):  # labels cycle: the train range misses classes
            raise ValueError(
                f"{self.name} has {len(self.classes)} classes but n_images={n_images} with "
                f"split_fractions={self.split_fractions} gives the train split {counts[0]} "
                f"image(s), so class(es) {self.classes[counts[0] :]} would have no training "
                f"image (labels are image index mod {len(self.classes)}); use n_images >= "
                f"{_min_images(len(self.classes), self.split_fractions)}"
            )
        self._chunks: dict[int, GeneratedBatch] = {}
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    # -- rendering ---------------------------------------------------------------------------

    def _render(self, global_indices: list[int], split: str, include_targets: bool) -> Any:
        raise NotImplementedError

    def render(self, global_indices: list[int], include_targets: bool = True) -> GeneratedBatch:
        """Render global image indices of this benchmark (uncached), as in this split.

        ``include_targets=False`` renders the same images without the class-defining objects
        (used by tests to check that those objects lie inside their boxes).
        """
        return self._render(list(global_indices), self.split, include_targets)

    def _chunk(self, chunk: int) -> GeneratedBatch:
        if chunk not in self._chunks:
            start = chunk * _CHUNK
            stop = min(start + _CHUNK, self.length)
            indices = list(range(self.offset + start, self.offset + stop))
            self._chunks[chunk] = self._render(indices, self.split, True)
        return self._chunks[chunk]

    def iter_chunks(self) -> Iterator[tuple[int, GeneratedBatch]]:
        """``(first row, batch)`` for consecutive chunks of the split, generated one at a time
        and not cached (a writer's memory stays one chunk, whatever the split's size); the
        same images as :meth:`materialize`."""
        for start in range(0, self.length, _CHUNK):
            if start // _CHUNK in self._chunks:
                yield start, self._chunks[start // _CHUNK]
                continue
            stop = min(start + _CHUNK, self.length)
            indices = list(range(self.offset + start, self.offset + stop))
            yield start, self._render(indices, self.split, True)

    def materialize(self) -> GeneratedBatch:
        """Generate (and cache) the whole split; returns all images and ground truth at once."""
        n_chunks = (self.length + _CHUNK - 1) // _CHUNK
        return GeneratedBatch.cat([self._chunk(c) for c in range(n_chunks)])

    # -- Dataset ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        index = index % self.length
        chunk = self._chunk(index // _CHUNK)
        row = index % _CHUNK
        sample = make_sample(
            image=chunk.images[row].to(torch.float32) / 255.0,
            label=int(chunk.labels[row]),
            boxes=chunk.boxes[row][chunk.box_valid[row]],
            mask=chunk.masks[row],
            has_region=True,
            index=index,
        )
        return apply_transform(sample, self.transform)

    # -- metadata --------------------------------------------------------------------------

    def _statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self._stats is None:
            n = min(_STATS_IMAGES, self.split_sizes["train"])
            images = self._render(list(range(n)), "train", True).images.to(torch.float64) / 255.0
            per_channel = images.transpose(0, 1).reshape(self.n_channels, -1)
            self._stats = (
                tuple(round(float(m), 6) for m in per_channel.mean(dim=1)),
                tuple(round(float(s), 6) for s in per_channel.std(dim=1)),
            )
        return self._stats

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the first (up to) 256 training images."""
        return self._statistics()[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the first (up to) 256 training images."""
        return self._statistics()[1]

    def metadata(self) -> dict[str, Any]:
        """Classes, channels, size and normalization, plus how to regenerate the data."""
        out = super().metadata()
        out.update(
            dataset=self.name,
            seed=self.seed,
            n_images=self.n_images,
            split_fractions=list(self.split_fractions),
        )
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n_images={self.n_images}, "
            f"image_size={self.size}, seed={self.seed}, len={self.length})"
        )


class Lesions(SyntheticBenchmark):
    """``lesions``: the RSNA-like binary task (classes ``negative``, ``positive``).

    Grayscale X-ray-like images; positives hold one to three lesions (compact clusters of
    nodules, one box each), negatives none. Every image holds the same kinds of nodules in the
    same numbers, so no global statistic separates the classes (see
    ``torchlap.data._render_lesions.render_lesions``).
    """

    name = "lesions"
    class_names = LESION_CLASSES
    channels = 1

    def _render(self, global_indices: list[int], split: str, include_targets: bool) -> Any:
        return render_lesions(global_indices, self.size, self.seed, include_targets)


class Concepts(SyntheticBenchmark):
    """``concepts``: K classes, class k defined by one object of colour k and shape k.

    RGB images (like the paper's concept-per-class CelebA/ImageNet setups); one box per image
    around the defining object. ``num_classes`` from 2 to 6 (default 4).
    """

    name = "concepts"
    channels = 3

    def __init__(self, *args: Any, num_classes: int = 4, **kwargs: Any) -> None:
        check_int(num_classes, "concepts num_classes", minimum=2, maximum=MAX_CONCEPT_CLASSES)
        self.n_concept_classes = num_classes
        self.class_names = tuple(concept_class_names(num_classes))
        super().__init__(*args, **kwargs)

    def _render(self, global_indices: list[int], split: str, include_targets: bool) -> Any:
        return render_concepts(
            global_indices, self.size, self.seed, self.n_concept_classes, include_targets
        )

    def metadata(self) -> dict[str, Any]:
        """The generator's settings, with the concept classes' count as ``n_classes``."""
        out = super().metadata()
        out["n_classes"] = self.n_concept_classes
        return out


class Digits(SyntheticBenchmark):
    """``digits``: scikit-learn's real 8x8 handwritten digits, upscaled onto a cluttered canvas
    with fragments of other digits; classes ``0``..``9``, one box per image.

    Each split draws handwritten samples from its own pool (see ``_render_digits.digit_pool``).
    """

    name = "digits"
    class_names = DIGIT_CLASSES
    channels = 1

    def _render(self, global_indices: list[int], split: str, include_targets: bool) -> Any:
        return render_digits(global_indices, self.size, self.seed, split, include_targets)


BUILTINS: dict[str, type[SyntheticBenchmark]] = {
    "lesions": Lesions,
    "concepts": Concepts,
    "digits": Digits,
}


def builtin_names() -> list[str]:
    """Names of the built-in benchmarks accepted by ``load_dataset``."""
    return sorted(BUILTINS)


def _options_of(cls: type) -> tuple[list[str], bool]:
    """The keyword options of ``cls(...)``, following ``**kwargs`` up the bases' ``__init__``;
    and whether it still ends open (then any keyword may be meant)."""
    accepted: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        accepted += [p.name for p in parameters if p.kind in kinds and p.name not in accepted]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return accepted, False
    return accepted, True


def builtin_dataset(name: str, **kwargs: Any) -> SyntheticBenchmark:
    """Construct the built-in benchmark ``name`` (see ``builtin_names()``)."""
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in dataset {name!r}; built-ins are {builtin_names()}")
    accepted, open_ended = _options_of(BUILTINS[name])
    if not open_ended and (unknown := sorted(set(kwargs) - set(accepted))):
        raise ValueError(
            f"the built-in {name!r} has no option(s) {unknown} (e.g. --data-option); its "
            f"options: {', '.join(accepted)}"
        )
    return BUILTINS[name](**kwargs)
