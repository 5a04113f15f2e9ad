"""The data randomization test's training set (Adebayo et al. 2018, section 4).

:class:`ShuffledLabels` permutes the labels of a dataset across its samples (a fixed,
seeded permutation, so the class frequencies stay those of the data): a model trained on it
can only memorise, and a map that looks the same on such a model as on the real one does not
depend on the relation between images and labels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["ShuffledLabels"]


class ShuffledLabels(Dataset):
    """``dataset`` with sample ``i`` labelled as sample ``permutation[i]`` (seeded by ``seed``).

    The labels are read once: ``labels`` when given (training passes ``dataset_labels``, which
    reads them without decoding images where the data says them), else one pass over
    ``dataset``; every other attribute (``classes``,
    ``n_channels``, ``mean``, ``std``, ...) is the wrapped dataset's.
    """

    def __init__(self, dataset: Any, seed: int = 0, labels: torch.Tensor | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.dataset = dataset
        if labels is None:
            labels = torch.tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
        elif not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (len(dataset),):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(
                f"labels must be a ({len(dataset)},) tensor, one per sample, got {got}"
            )
        generator = torch.Generator().manual_seed(seed)
        self.permutation = torch.randperm(len(labels), generator=generator)
        self.labels = labels[self.permutation]
        self.original_labels = labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        label = sample["label"]
        new = self.labels[index]
        sample["label"] = new.to(label.dtype) if isinstance(label, torch.Tensor) else int(new)
        return sample

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
