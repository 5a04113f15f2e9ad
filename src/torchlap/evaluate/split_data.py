"""The split an evaluation reads: opened and checked against the run before any image is
decoded (:func:`open_eval_split`, no model needed), then decoded (:func:`decode_eval_split`)
into the tensors of :class:`EvalData`. :mod:`torchlap.evaluate.common` re-exports them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from torchlap.data import AnnotatedFolder, collate_regions, first_images, load_dataset
from torchlap.evaluate.provenance import DataSettings, data_settings, same_data
from torchlap.evaluate.unseen import check_unseen
from torchlap.metrics._common import image_ids_of
from torchlap.runs import resolve_run_data

logger = logging.getLogger(__name__)

__all__ = [
    "EvalData",
    "OpenedSplit",
    "RunSplits",
    "data_reading",
    "decode_eval_split",
    "decode_shared",
    "load_eval_data",
    "open_eval_split",
    "open_run_splits",
    "open_shared",
]


@dataclass
class EvalData:
    """The tensors of one split: images in [0, 1], labels, region masks and flags.

    ``image_ids`` (int64 ``(N,)``): each image's index in the split as read before
    ``--max-images`` cut it, the id that seeds its random draws (keep-k% and Drop%/Increase%
    tie-breaks, stability's noise: :func:`~torchlap.metrics.tie_keys`), so that an image gets
    the same draws whichever cut evaluates it; ``None``: ``0 .. N-1`` (an uncut split or a
    prefix of it). Checked by :func:`~torchlap.metrics._common.image_ids_of` (distinct ints
    >= 0, one per image).
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    has_region: Tensor
    classes: list[str]
    name: str
    #: how the split was read (seed, image count, data options; None: not recorded)
    settings: DataSettings | None = None
    #: each image's index in the split before the --max-images cut (seeds its draws)
    image_ids: Tensor | None = None

    def __post_init__(self) -> None:
        self.image_ids = image_ids_of(self.image_ids, len(self), self.labels.device)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class OpenedSplit:
    """A split opened by :func:`open_eval_split`: its annotations read and checked against the
    run (classes, channels, not empty), no image decoded yet (:func:`decode_eval_split`)."""

    dataset: Dataset
    data: str
    split: str
    settings: DataSettings
    #: the --max-images (or --max-val-images) the split was cut to (None: uncut)
    max_images: int | None = None
    #: each kept image's index in the split before the --max-images cut (None: uncut)
    ids: Tensor | None = None


def load_eval_data(
    run: Any,
    data: str,
    split: str,
    max_images: int | None,
    batch_size: int = 64,
    settings: DataSettings | None = None,
) -> EvalData:
    """Read ``split`` of ``data`` as ``run`` saw it: with the run's own seed, image count and
    data options when ``data`` is the run's data (however its path is spelled), else with
    ``settings`` (default: split seed 0, the data's default image count, no data options;
    :func:`~torchlap.evaluate.provenance.data_settings`). ``run``: a
    :class:`~torchlap.runs.LoadedRun` or the :class:`~torchlap.runs.RunFacts` of one (no model
    is needed). :func:`open_eval_split` then :func:`decode_eval_split`."""
    opened = open_eval_split(run, data, split, max_images, settings)
    return decode_eval_split(run, opened, batch_size)


def open_eval_split(
    run: Any,
    data: str,
    split: str,
    max_images: int | None,
    settings: DataSettings | None = None,
    folders: dict[tuple, Any] | None = None,
) -> OpenedSplit:
    """:func:`load_eval_data`'s checks before any image is decoded: the split opened with
    :func:`~torchlap.data.load_dataset` (a folder's annotations parsed, its files checked),
    refused (ValueError) when its classes or channel count are not the run's or it is empty,
    and cut to ``max_images``. ``folders``: the folders read so far (filled here), so that
    another split of a folder read alike is taken from it
    (:meth:`~torchlap.data.AnnotatedFolder.with_split`: its CSV and image headers read once)."""
    if settings is None:
        settings = data_settings(run.config, data)
    dataset = _load_split(run, data, split, settings, folders)
    if list(dataset.classes) != list(run.classes):
        raise ValueError(
            f"{data!r} has classes {list(dataset.classes)}, the run was trained on "
            f"{list(run.classes)}: evaluate it on data with the same classes"
        )
    if len(dataset) == 0:
        raise ValueError(f"the {split} split of {data!r} is empty")
    _check_channels(run, data, getattr(dataset, "n_channels", run.in_channels))
    opened = OpenedSplit(dataset, data, split, settings, max_images)
    if max_images is not None and len(dataset) > max_images:
        # a folder's images class-stratified (its CSV may list one class first); each keeps
        # its index in the split as its id (its draws do not depend on --max-images)
        kept = first_images(dataset, max_images, settings.seed)
        opened.dataset = Subset(dataset, kept)
        opened.ids = torch.tensor(kept, dtype=torch.long, device="cpu")
    return opened


def _load_split(
    run: Any, data: str, split: str, settings: DataSettings, folders: dict[tuple, Any] | None
) -> Any:
    """``split`` of ``data`` read with ``settings`` at the run's image size: from a folder
    read alike in ``folders`` (none parsed or opened again) or loaded (and kept there)."""
    key = ("folder", str(data), run.image_size, settings.reading())
    if folders is not None and key in folders:
        return folders[key].with_split(split)
    kwargs = dict(settings.data_options)
    if settings.n_images is not None:
        kwargs["n_images"] = settings.n_images
    dataset = load_dataset(
        data, split=split, image_size=run.image_size, seed=settings.seed, **kwargs
    )
    if folders is not None and isinstance(dataset, AnnotatedFolder):
        folders[key] = dataset
    return dataset


def _check_channels(run: Any, data: str, channels: int) -> None:
    if channels != run.in_channels:
        raise ValueError(
            f"{data!r} has {channels}-channel images, the run expects {run.in_channels}"
        )


def decode_eval_split(run: Any, opened: OpenedSplit, batch_size: int = 64) -> EvalData:
    """The images, labels and regions of a split :func:`open_eval_split` opened, decoded in
    batches of ``batch_size``."""
    parts: dict[str, list[Tensor]] = {"image": [], "label": [], "mask": [], "has_region": []}
    for batch in DataLoader(opened.dataset, batch_size=batch_size, collate_fn=collate_regions):
        for key in parts:
            parts[key].append(batch[key])
    images = torch.cat(parts["image"]).float()
    _check_channels(run, opened.data, images.shape[1])  # (a transform may change them)
    labels = torch.cat(parts["label"])
    counts = torch.bincount(labels, minlength=len(run.classes)).tolist()  # (on the host)
    if missing := [name for name, n in zip(run.classes, counts, strict=True) if n == 0]:
        logger.warning(
            "the %s split of %s (%d images) holds no image of class %s: the metrics that need "
            "every class (sensitivity, specificity, balanced accuracy) are n/a on it",
            opened.split, opened.data, len(labels), ", ".join(map(repr, missing)),
        )  # fmt: skip
    return EvalData(
        images=images,
        labels=labels,
        masks=torch.cat(parts["mask"]).bool(),
        has_region=torch.cat(parts["has_region"]),
        classes=list(run.classes),
        name=str(opened.data),
        settings=opened.settings,
        image_ids=opened.ids,
    )


def _reading_key(run: Any, data: str, split: str, max_images: int | None, settings: Any) -> tuple:
    """What decides a split's tensors: the data, split, image count, image size, channels,
    classes and reading (runs of a comparison alike in all of them share one copy)."""
    return (str(data), split, max_images, run.image_size, run.in_channels, tuple(run.classes),
            settings.reading())  # fmt: skip


def open_shared(
    run: Any,
    data: str,
    split: str,
    max_images: int | None,
    settings: DataSettings,
    shared: dict[tuple, Any] | None,
) -> OpenedSplit:
    """:func:`open_eval_split`, or the split another run of the comparison opened alike
    (``shared``: what was opened and decoded so far, filled here; ``None``: nothing shared)."""
    if shared is None:
        return open_eval_split(run, data, split, max_images, settings)
    key = ("opened", *_reading_key(run, data, split, max_images, settings))
    if key not in shared:
        shared[key] = open_eval_split(run, data, split, max_images, settings, folders=shared)
    return replace(shared[key], settings=settings)  # (the dataset itself shared)


def decode_shared(
    run: Any, opened: OpenedSplit, batch_size: int, shared: dict[tuple, Any] | None
) -> EvalData:
    """:func:`decode_eval_split`, or the tensors another run of the comparison decoded from a
    split opened alike (with ``opened``'s settings, which may name another run's reading)."""
    if shared is None:
        return decode_eval_split(run, opened, batch_size)
    key = ("decoded", *_reading_key(run, opened.data, opened.split, opened.max_images,
                                    opened.settings))  # fmt: skip
    if key not in shared:
        shared[key] = decode_eval_split(run, opened, batch_size)
    return replace(shared[key], settings=opened.settings)


@dataclass
class RunSplits:
    """The splits an evaluation of one run reads, opened (:func:`open_run_splits`)."""

    data: str
    settings: DataSettings
    #: the sentence saying how the data is read when not the run's own way (``{"data": [...]}``)
    notes: dict[str, list[str]]
    test: OpenedSplit
    val: OpenedSplit


def open_run_splits(
    run: Any,
    data: str | None,
    options: Any,
    given: DataSettings | None,
    shared: dict[tuple, Any] | None = None,
) -> RunSplits:
    """``run``'s evaluated split (``options.split``, cut to ``options.max_images``) and
    validation split (``options.max_val_images``) of ``data`` (default: the run's own, a
    relative folder of an older run looked up where :func:`~torchlap.runs.resolve_run_data`
    says), opened and checked against ``run`` (its :class:`~torchlap.runs.RunFacts`: no model
    needed); read with ``given`` or the run's own settings (:func:`data_reading`). A folder's
    ``annotations.csv`` is parsed and its image headers opened once for both splits (and once
    for the runs of a comparison that read it alike: ``shared``)."""
    data = data or resolve_run_data(run.run_dir, run.config)
    settings, notes = data_reading(run, data, given)
    shared = {} if shared is None else shared  # (a folder's two splits read from one parse)
    test = open_shared(run, data, options.split, options.max_images, settings, shared)
    check_unseen(run, test, data)  # (read another way than the run's: not its training images)
    val = open_shared(run, data, "val", options.max_val_images, settings, shared)
    return RunSplits(data, settings, notes, test, val)


def data_reading(
    run: Any, data: str, given: DataSettings | None
) -> tuple[DataSettings, dict[str, list[str]]]:
    """How ``data`` is read for ``run``: ``given`` (compare's common settings) or the run's
    own settings for its own data (the defaults for other data); and, when that is not the
    run's own reading, the sentence (logged by evaluate, and ``results.json["notes"]["data"]``)
    that says how it is split: the seed decides the split of a folder without a split column."""
    own = data_settings(run.config, data)
    if given is None:
        settings = own
    else:
        settings = replace(given, own=own.own and given.reading() == own.reading())
    if settings.own:
        return settings, {}
    trained = run.config.get("train", {}).get("data")
    if same_data(data, trained):
        text = f"evaluated on {data}, the run's training data, with {settings.describe()}"
    else:
        text = (
            f"evaluated on {data}, not the run's training data ({trained}), with "
            f"{settings.describe()}"
        )
    return settings, {"data": [text]}
