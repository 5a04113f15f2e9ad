"""Concept sets ``C_s`` of the knowledge-injection losses (paper 000, section III.B.1).

Each sample ``s`` has a set of concepts ``C_s`` that its class contains. The concept-discrimination
loss (Eq. 5) pushes the head of a concept up in samples that contain it and down in the others,
so the losses need, for every class label, the set of concept heads that are present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from torchlap._checks import check_has_values, check_positive_int, is_int

__all__ = ["ConceptSets"]


class ConceptSets:
    """Which concept heads are present in which class (the sets ``C_s`` of Eq. 5).

    Build it with :meth:`default` (the paper's layouts) or :meth:`from_mapping` (your own).
    ``table`` is a ``(num_classes, n_concepts)`` bool tensor; ``presence(labels)`` looks it up.
    A concept present in every class is a *common* concept (the paper's CelebA "common" head);
    ``common`` lists them.
    """

    def __init__(self, table: Tensor) -> None:
        if not isinstance(table, Tensor) or table.dtype != torch.bool or table.dim() != 2:
            got = (
                f"dtype {table.dtype} and shape {tuple(table.shape)}"
                if isinstance(table, Tensor)
                else type(table).__name__
            )
            raise TypeError(
                f"ConceptSets expects its table as a (num_classes, n_concepts) bool tensor, got "
                f"{got}; use ConceptSets.default(...) or ConceptSets.from_mapping(...) to build "
                "one"
            )
        check_has_values(table, "table")
        if table.shape[0] < 1 or table.shape[1] < 1:
            raise ValueError(
                f"the table needs at least one class and one concept, got {tuple(table.shape)}"
            )
        self.table = table.detach().to("cpu").clone()

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return int(self.table.shape[0])

    @property
    def n_classes(self) -> int:
        """Kept spelling of :attr:`num_classes` (the key :meth:`to_dict` writes)."""
        return self.num_classes

    @property
    def n_concepts(self) -> int:
        """Number of concept heads."""
        return int(self.table.shape[1])

    @property
    def common(self) -> Tensor:
        """Bool (n_concepts,): concepts present in every class."""
        return self.table.all(dim=0)

    @classmethod
    def default(cls, num_classes: int, n_concepts: int) -> ConceptSets:
        """The paper's layouts.

        - ``n_concepts == num_classes``: concept ``c`` is present in class ``c`` only;
        - ``num_classes == 2`` and ``n_concepts == 1``: the one concept is present in class 1 only
          (the paper's RSNA model: the pneumonia head is active in positives only);
        - ``n_concepts == num_classes + 1``: concept ``c`` in class ``c``, plus a last "common" head
          present in every class (the paper's CelebA model).

        Any other combination needs :meth:`from_mapping`.
        """
        num_classes = check_positive_int(num_classes, "num_classes")
        n_concepts = check_positive_int(n_concepts, "n_concepts")
        if n_concepts == num_classes:
            return cls(torch.eye(num_classes, dtype=torch.bool))
        if num_classes == 2 and n_concepts == 1:
            return cls(torch.tensor([[False], [True]]))
        if n_concepts == num_classes + 1:
            table = torch.zeros(num_classes, n_concepts, dtype=torch.bool)
            table[:, :num_classes] = torch.eye(num_classes, dtype=torch.bool)
            table[:, -1] = True
            return cls(table)
        raise ValueError(
            f"no default concept sets for num_classes={num_classes}, n_concepts={n_concepts}; "
            "defaults exist for n_concepts == num_classes, n_concepts == num_classes + 1 (common "
            "head) and num_classes == 2 with n_concepts == 1; otherwise use "
            "ConceptSets.from_mapping"
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, Iterable[int]], n_concepts: int) -> ConceptSets:
        """Build from ``{class_index: [concept indices present]}``.

        The keys must be exactly ``0 .. num_classes - 1``; a class may have no concept (an empty
        list: every head is pushed down on it). Duplicated concept indices are merged.
        """
        n_concepts = check_positive_int(n_concepts, "n_concepts")
        if not isinstance(mapping, Mapping) or len(mapping) == 0:
            raise TypeError(
                "mapping must be a non-empty dict {class_index: [concept indices]}, "
                f"got {mapping!r}"
            )
        keys = []
        for key in mapping:
            if isinstance(key, bool) or not isinstance(key, int):
                raise TypeError(f"class indices must be ints, got {key!r}")
            keys.append(key)
        num_classes = len(keys)
        missing = sorted(set(range(num_classes)) - set(keys))
        if missing or sorted(keys) != list(range(num_classes)):
            raise ValueError(
                f"the mapping must have every class 0..{num_classes - 1} as a key exactly once "
                f"(its {num_classes} key(s), one per class, count the classes); got keys "
                f"{sorted(keys)} (missing {missing})"
            )
        table = torch.zeros(num_classes, n_concepts, dtype=torch.bool)
        for class_index, concepts in mapping.items():
            if isinstance(concepts, (str, bytes)) or not isinstance(concepts, Iterable):
                raise TypeError(
                    f"class {class_index}: expected a list of concept indices, got {concepts!r}"
                )
            for concept in concepts:
                if isinstance(concept, bool) or not isinstance(concept, int):
                    raise TypeError(
                        f"class {class_index}: concept indices must be ints, got {concept!r}"
                    )
                if not 0 <= concept < n_concepts:
                    raise ValueError(
                        f"class {class_index}: concept index {concept} is out of range "
                        f"[0, {n_concepts - 1}] for n_concepts={n_concepts}"
                    )
                table[class_index, concept] = True
        return cls(table)

    def to_mapping(self) -> dict[int, list[int]]:
        """``{class_index: [concept indices present]}``."""
        return {
            k: [int(c) for c in torch.nonzero(self.table[k]).flatten().tolist()]
            for k in range(self.num_classes)
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (see :meth:`from_dict`)."""
        return {
            "n_classes": self.num_classes,
            "n_concepts": self.n_concepts,
            "mapping": {str(k): v for k, v in self.to_mapping().items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConceptSets:
        """Inverse of :meth:`to_dict` (class keys may be strings, as JSON makes them)."""
        if not isinstance(data, Mapping) or not {"n_concepts", "mapping"} <= set(data):
            raise ValueError(
                "expected a dict with keys 'n_concepts' and 'mapping' (and optionally "
                f"'n_classes'), as written by ConceptSets.to_dict; got {data!r}"
            )
        unknown = sorted(str(key) for key in set(data) - {"n_classes", "n_concepts", "mapping"})
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown}; ConceptSets.to_dict writes 'n_classes', "
                "'n_concepts' and 'mapping'"
            )
        raw = data["mapping"]
        if not isinstance(raw, Mapping):
            raise TypeError(f"'mapping' must be a dict, got {raw!r}")
        mapping: dict[int, Any] = {}
        for key, value in raw.items():
            # int() would bend "1_0" into 10, a fullwidth digit or " 1" into 1, 1.7 and True into 1
            if is_int(key):
                index = key
            elif isinstance(key, str) and key.isascii() and key.isdigit():
                index = int(key)
            else:
                raise ValueError(
                    "class keys must be integers (class indices): ints or strings of ASCII "
                    f"digits ('0', '1', ... as to_dict writes them), got {key!r}"
                )
            if index in mapping:
                raise ValueError(f"class {index} appears twice in the mapping")
            mapping[index] = value
        sets = cls.from_mapping(mapping, data["n_concepts"])
        if "n_classes" in data and (
            not is_int(data["n_classes"]) or data["n_classes"] != sets.num_classes
        ):
            raise ValueError(
                f"'n_classes' must be an int equal to the number of classes of the mapping "
                f"({sets.num_classes}), got {data['n_classes']!r}"
            )
        return sets

    def presence(self, labels: Tensor) -> Tensor:
        """Bool (B, n_concepts): ``present[s, c]`` is True when concept ``c`` is in ``C_s``."""
        self.check_labels(labels)
        return self.table.to(labels.device)[labels.long()]

    def check_labels(self, labels: object) -> None:
        """``labels`` an integer (B,) tensor of class indices in [0, num_classes): else
        ``TypeError``/``ValueError``. One device sync (the range, read as a pair)."""
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a LongTensor (B,), got {type(labels).__name__}")
        if (
            labels.dim() != 1
            or labels.dtype.is_floating_point
            or labels.dtype.is_complex
            or labels.dtype == torch.bool
        ):
            raise ValueError(
                f"labels must be an integer tensor of shape (B,), got dtype {labels.dtype} "
                f"and shape {tuple(labels.shape)}"
            )
        if not labels.numel():
            return
        check_has_values(labels, "labels")
        low, high = torch.stack(labels.aminmax()).tolist()  # the sync: a ValueError needs it
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"labels must be in [0, {self.num_classes - 1}] (num_classes={self.num_classes}), "
                f"got values in [{low}, {high}]"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConceptSets):
            return NotImplemented
        return self.table.shape == other.table.shape and bool(torch.equal(self.table, other.table))

    __hash__ = None  # type: ignore[assignment]  # mutable-equality class

    def __repr__(self) -> str:
        return (
            f"ConceptSets(num_classes={self.num_classes}, n_concepts={self.n_concepts}, "
            f"mapping={self.to_mapping()})"
        )
