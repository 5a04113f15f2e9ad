"""``lap``: the maps a LAP model leaves behind in its own forward pass (paper 000, III.A).

One forward pass, no gradient: per LAP layer the map of the chosen concept head (or the
aggregated score ``S``), and "LAP All", the integration of all LAP layers of the paper's
supplement, implemented batched by :func:`lap_all` in its two variants: Algorithm 1 (the map
thresholded at 0.5) and the unclipped sum the supplement uses for top-scored selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchlap._checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_has_values,
    check_int,
    check_number,
)
from torchlap.explainers.base import Explainer, register
from torchlap.explainers.inputs import check_class_tensor
from torchlap.layers.lap import LapBase, LapMaps, attention_maps, clear_attention_maps, lap_modules

__all__ = ["LAP_ALL_VARIANTS", "LapExplainer", "concept_mapping", "lap_all", "select_lap_map"]


def _window_index(fine: tuple[int, int], coarse: tuple[int, int], device: torch.device) -> Tensor:
    """For each pixel of a ``fine`` grid, the flat index of the ``coarse`` pixel covering it.

    Fine row ``y`` belongs to coarse row ``floor(y * h_coarse / h_fine)`` (same for columns):
    for a LAP layer of stride ``k`` that is the ``k x k`` block under each output pixel.
    """
    rows = torch.arange(fine[0], device=device) * coarse[0] // fine[0]
    cols = torch.arange(fine[1], device=device) * coarse[1] // fine[1]
    return rows[:, None] * coarse[1] + cols[None, :]


#: the two integrations of "LAP All": Algorithm 1 (for thresholding) and the unclipped sum the
#: supplement uses for top-scored selection
LAP_ALL_VARIANTS = ("algorithm1", "unclipped_sum")

THRESHOLDS = "a number in [0, 1] (Algorithm 1 compares LAP probabilities with it)"


def lap_all(
    maps: Sequence[Tensor],
    decay: float = 0.8,
    threshold: float = 0.5,
    variant: str = "algorithm1",
    *,
    check_finite: bool = True,
) -> Tensor:
    """Integrate LAP maps from the deepest layer to the shallowest ("LAP All", paper 000, Alg. 1).

    ``variant="algorithm1"`` (default, the map to threshold at 0.5) is Algorithm 1, below.
    ``variant="unclipped_sum"`` is the supplement's map for top-scored selection: "the scores
    have been added without being clipped to keep the order of scores below 0.5". Every pixel
    adds every layer's decayed score, ``R_l = R_{l+1} + P_l * decay^(L-l)`` (``R_{l+1}`` read
    through the same windows), with no activity test: ``R_1 = sum_l decay^(L-l) P_l``. Algorithm 1
    copies ``r`` into every window that fails its test, so its map is a few plateaus below 0.5
    (ties that top-k selection can only break arbitrarily); the sum keeps the order the layers
    give those pixels.

    ``maps``: per LAP layer a map ``(B, h_l, w_l)`` in forward order (shallow to deep). The
    integrated map starts as the deepest layer's map, ``R_L = P_L``, and moves one layer up at a
    time. Each pixel ``r`` of ``R_{l+1}`` covers a window ``p`` of ``P_l`` (the pixels that map to
    it, see :func:`_window_index`). When ``r >= threshold`` and some pixel of ``p`` is
    ``>= threshold``, the credit goes to the active pixels only: a pixel of the window becomes
    ``max(r, p * decay^(L-l))`` if it is active and ``p * decay^(L-l)`` otherwise. In every other
    case the window keeps ``r`` (the shallower layer did not see this zone, so all its pixels keep
    the credit). Returns ``R_1`` ``(B, h_1, w_1)``, at the shallowest layer's resolution.

    The paper's windows are the LAP kernels; here a window is the block of pixels under one
    pixel of the next map, which is the kernel for non-overlapping pools and the stride block
    for overlapping ones.

    Accepted: ``decay`` a number in (0, 1], ``threshold`` a number in [0, 1] (a LAP map holds
    probabilities), ``variant`` one of :data:`LAP_ALL_VARIANTS`, and finite maps: a NaN or
    infinite pixel raises ``ValueError`` (Algorithm 1's comparisons would drop a NaN silently),
    checked with one device sync (skipped while ``torch.export`` or ``torch.compile`` traces,
    and with ``check_finite=False``: the maps are integrated as they are, as an exported graph
    integrates them, e.g. :class:`torchlap.export.LapExportModule` on NaN pixels).
    """
    check_bool(check_finite, "check_finite")
    _check_lap_all_options(maps, decay, threshold, variant, check_finite)
    depth = len(maps)
    integrated = maps[-1]
    for level in range(depth - 2, -1, -1):
        layer_map = maps[level].to(integrated.dtype)
        batch, height, width = layer_map.shape
        coarse = (integrated.shape[-2], integrated.shape[-1])
        index = _window_index((height, width), coarse, layer_map.device).flatten()
        index = index.expand(batch, -1)
        carried = integrated.flatten(1).gather(1, index).view(batch, height, width)
        if variant == "unclipped_sum":
            integrated = carried + layer_map * decay ** (depth - 1 - level)
            continue
        window_max = layer_map.new_full((batch, coarse[0] * coarse[1]), float("-inf"))
        window_max = window_max.scatter_reduce(1, index, layer_map.flatten(1), reduce="amax")
        window_max = window_max.gather(1, index).view(batch, height, width)
        decayed = layer_map * decay ** (depth - 1 - level)
        credited = torch.where(layer_map >= threshold, torch.maximum(carried, decayed), decayed)
        active = (carried >= threshold) & (window_max >= threshold)
        integrated = torch.where(active, credited, carried)
    return integrated


def _check_lap_all_options(
    maps: Sequence[Tensor], decay: object, threshold: object, variant: object, finite: bool
) -> None:
    """The arguments of :func:`lap_all` (raise naming the bad one and what is accepted)."""
    if isinstance(maps, Tensor) or not isinstance(maps, Sequence) or not maps:
        raise ValueError("lap_all needs at least one map: a list of (B, h, w) maps, one per LAP")
    check_fraction(decay, "decay")
    check_number(threshold, "threshold", minimum=0.0, maximum=1.0, accepted=THRESHOLDS)
    check_choice(variant, "variant", LAP_ALL_VARIANTS)
    for m in maps:
        if not isinstance(m, Tensor) or m.dim() != 3 or m.shape[0] != maps[0].shape[0]:
            raise ValueError(
                "lap_all expects maps of shape (B, h, w) with the same B, got "
                f"{[tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in maps]}"
            )
        if not m.is_floating_point():
            raise TypeError(
                f"lap_all expects floating maps (a LAP layer's probabilities), got {m.dtype}"
            )
    if not finite or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return  # no data-dependent branch in an exported graph (torchlap.export)
    finite = torch.stack([m.isfinite().all().to(maps[0].device) for m in maps])
    if not bool(finite.all()):  # the one sync
        bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
        raise ValueError(
            f"lap_all got NaN or infinite values in maps {bad} (index in forward order); a LAP "
            "map holds finite probabilities"
        )


def concept_mapping(concept_sets: object) -> Mapping | None:
    """``concept_sets`` as a new dict class index -> list of concept indices, checked.

    Accepts ``None``, a :class:`~torchlap.losses.ConceptSets`, its ``to_dict()`` form (as a run's
    ``config.json`` stores it) or a plain mapping; raises ``TypeError`` for anything else and
    ``ValueError`` for entries that are no class index -> list of concept indices. The result is
    a copy (keys as given, each list copied), so a caller that keeps it (the ``lap`` explainer,
    the export module) is not changed by later edits of the user's mapping: the entries are
    checked here, once, and nowhere after.
    """
    if concept_sets is None:
        return None
    to_mapping = getattr(concept_sets, "to_mapping", None)
    if isinstance(concept_sets, Mapping) and "mapping" not in concept_sets:
        mapping = concept_sets
    elif callable(to_mapping):
        mapping = to_mapping()
    elif isinstance(concept_sets, Mapping) and isinstance(concept_sets["mapping"], Mapping):
        mapping = concept_sets["mapping"]
    else:
        raise TypeError(
            "concept_sets must be None, a ConceptSets, its to_dict() form or a mapping class "
            f"index -> list of concept indices, got {type(concept_sets).__name__}"
        )
    return _checked_copy(mapping)  # when given, not at the first map


def _checked_copy(mapping: Mapping) -> dict[Any, list[int]]:
    """Class indices (ints, or their decimal strings as JSON keys) -> lists of ints >= 0,
    copied into a new dict of new lists (the one place these entries are checked)."""
    copied: dict[Any, list[int]] = {}
    for key, heads in mapping.items():
        try:
            valid_key = not isinstance(key, bool) and int(key) >= 0
        except (TypeError, ValueError):
            valid_key = False
        if not valid_key:
            raise ValueError(
                f"concept_sets keys must be class indices (ints >= 0, or their strings as in a "
                f"run's config.json), got {key!r}"
            )
        if isinstance(heads, (int, str)) or not isinstance(heads, Sequence):
            raise ValueError(
                f"concept_sets[{key!r}] must be a list of concept indices, got {heads!r}"
            )
        copied[key] = list(heads)
        for head in copied[key]:
            if isinstance(head, bool) or not isinstance(head, int) or head < 0:
                raise ValueError(f"concept index {head!r} for class {key!r} is not an int >= 0")
    return copied


def _concept_members(concept_sets: Mapping, num_classes: int, n_concepts: int) -> Tensor | None:
    """Boolean ``(num_classes, n_concepts)``: which heads belong to each class (None: unusable).

    ``concept_sets`` is :func:`concept_mapping`'s checked copy (class indices -> lists of ints
    >= 0): its entries are not checked again here."""
    # built on the host from the Python mapping, copied once to the maps' device by the caller
    members = torch.zeros(num_classes, n_concepts, dtype=torch.bool, device="cpu")
    for key, heads in concept_sets.items():
        cls = int(key)
        if cls >= num_classes:
            continue  # a class the model does not predict
        for head in heads:
            if head >= n_concepts:
                return None
            members[cls, head] = True
    return members


def check_fits_a_layer(concept_sets: Mapping, laps: Mapping[str, LapBase]) -> None:
    """Concept sets that fit none of the model's LAP layers (a head index beyond every layer's
    head count) would be ignored at every layer: refused instead. Sets that fit some layers are
    used there; the others choose their heads by shape (:func:`select_lap_map`)."""
    highest = max((int(h) for heads in concept_sets.values() for h in heads), default=-1)
    counts = {name: int(getattr(lap, "n_concepts", 1)) for name, lap in laps.items()}
    if highest >= max(counts.values()):
        shown = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise ValueError(
            f"concept_sets name concept head {highest}, but no LAP layer of the model has that "
            f"many heads (heads per layer: {shown}); give concept sets of head indices below "
            f"{max(counts.values())}, or None to choose the heads from each layer's shape"
        )


def select_lap_map(
    maps: LapMaps,
    target: Tensor,
    num_classes: int,
    head: int | str | None = None,
    concept_sets: object = None,
    include_common: bool = False,
) -> Tensor:
    """One LAP layer's map ``(B, H, W)`` for each sample's target class.

    ``head``: an int (that concept head), ``"score"`` (the aggregated score ``S``), or ``None``
    (automatic): the heads of the target class's concepts when ``concept_sets`` (class index ->
    list of concept indices, or a ``ConceptSets``) fits this layer — several heads combine by
    their pixel-wise maximum, a class without concepts gets ``S`` —; otherwise head ``target``
    when the layer has one head per class, its only head when it has one, and ``S`` in every
    other case. A *common* head (one present in every class, e.g. the paper's CelebA layout of
    one head per class plus a common head) explains no class in particular: it is left out
    unless ``include_common=True`` or the class has no other head.
    """
    if not isinstance(getattr(maps, "concepts", None), Tensor) or not isinstance(
        getattr(maps, "score", None), Tensor
    ):
        raise TypeError(
            "maps must be one LAP layer's LapMaps (torchlap.attention_maps(model)[name]), got "
            f"{type(maps).__name__}"
        )
    concepts, score = maps.concepts, maps.score[:, 0]
    n_concepts = concepts.shape[1]
    if head == "score":
        return score
    if isinstance(head, int) and not isinstance(head, bool):
        if not 0 <= head < n_concepts:
            raise ValueError(f"head {head} does not exist: this LAP layer has {n_concepts} heads")
        return concepts[:, head]
    if head is not None:
        raise ValueError(f"head must be None, an int or 'score', got {head!r}")
    check_int(num_classes, "num_classes", minimum=1)
    check_bool(include_common, "include_common")
    _check_target(target, concepts.shape[0], num_classes)
    sets = concept_mapping(concept_sets)
    members = None if sets is None else _concept_members(sets, num_classes, n_concepts)
    # class indices index the heads (gather takes int64): a uint8 or int8 target reads the same
    return _map_of_targets(maps, target.long(), num_classes, members, include_common)


def _check_target(target: object, batch: int, num_classes: int) -> None:
    """``target`` of :func:`select_lap_map`: an integer tensor (B,) of class indices in
    ``[0, num_classes)`` (the range with one device sync, skipped while ``torch.export`` or
    ``torch.compile`` traces)."""
    accepted = f"an integer tensor of {batch} class indices in [0, {num_classes})"
    target = check_class_tensor(target, accepted)
    if tuple(target.shape) != (batch,):
        raise ValueError(f"target must be {accepted}, got shape {tuple(target.shape)}")
    check_has_values(target, "target")
    if batch == 0 or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return
    low, high = torch.stack(target.aminmax()).tolist()  # one sync
    if low < 0 or high >= num_classes:
        raise ValueError(f"target must be {accepted}, got classes from {low} to {high}")


def _map_of_targets(
    maps: LapMaps, target: Tensor, num_classes: int, members: Tensor | None, include_common: bool
) -> Tensor:
    """:func:`select_lap_map` with ``head=None``, the concept sets given as their
    ``(num_classes, n_concepts)`` membership table (``None``: the heads chosen by shape)."""
    concepts, score = maps.concepts, maps.score[:, 0]
    n_concepts = concepts.shape[1]
    if members is not None:
        if not include_common:
            own = members & ~members.all(dim=0, keepdim=True)
            members = torch.where(own.any(dim=1, keepdim=True), own, members)
        chosen = members.to(concepts.device)[target]  # (B, n_concepts)
        picked = torch.where(chosen[:, :, None, None], concepts, float("-inf")).amax(dim=1)
        return torch.where(chosen.any(dim=1)[:, None, None], picked, score)
    if n_concepts == num_classes:
        index = target.view(-1, 1, 1, 1).expand(-1, 1, *concepts.shape[-2:])
        return concepts.gather(1, index)[:, 0]
    if n_concepts == 1:
        return concepts[:, 0]
    return score


@register("lap")
class LapExplainer(Explainer):
    """The LAP model's own maps from one forward pass (paper 000; no gradient, no extra pass).

    Options:
        layer: ``"all"`` (default: "LAP All", :func:`lap_all`, at the shallowest LAP layer's
            resolution), a LAP layer's module name, or its index in forward order (negative
            indices count from the deepest). A single layer's raw map is at its input resolution.
        head: ``None`` (automatic, see :func:`select_lap_map`), an int, or ``"score"``.
        concept_sets: which concept heads belong to which class (a ``ConceptSets``, its
            ``to_dict()`` form or a mapping class -> concept indices), for ``head=None``. A run's
            are in ``load_run(run).concept_sets``; ``torchlap evaluate`` and ``torchlap explain``
            pass them (a run fact: :attr:`run_facts`). ``None``: no concept sets, the heads are
            chosen from the layer's shape.
        include_common: with ``concept_sets``, also take the heads common to every class.
        decay, threshold: Algorithm 1's decay factor (a number in (0, 1], default 0.8) and
            activity threshold (a number in [0, 1], default 0.5).
        variant: ``"algorithm1"`` (default; Algorithm 1, the map to threshold at 0.5) or
            ``"unclipped_sum"`` (the supplement's map for top-scored selection), see
            :func:`lap_all`. Only for ``layer="all"``.

    Raises ``ValueError`` for a model without LAP layers.
    """

    display_name = "LAP"
    kind = "own map"
    comparison_rank = 0
    column_rank = 8
    native_threshold = 0.5  # paper 000: a LAP map is thresholded at 0.5, nothing fitted
    run_facts = ("concept_sets",)
    not_applicable = "the model has no LAP layer"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """A model with LAP layers."""
        return bool(lap_modules(model))

    @classmethod
    def ranking_options(cls, options: dict[str, Any], ranking: str) -> dict[str, Any] | None:
        """ "LAP All" in the ``ranking`` variant (:data:`LAP_ALL_VARIANTS`) for the metrics that
        rank pixels; ``None`` for a single layer's map."""
        if options.get("layer", "all") != "all":
            return None
        return {**options, "variant": ranking}

    def __init__(
        self,
        model: nn.Module,
        layer: str | int = "all",
        head: int | str | None = None,
        decay: float = 0.8,
        threshold: float = 0.5,
        variant: str = "algorithm1",
        concept_sets: object = None,
        include_common: bool = False,
    ) -> None:
        super().__init__(model)
        self._laps = lap_modules(model)
        if not self._laps:
            raise ValueError(
                "the 'lap' explainer needs a model with LAP layers; put some in with "
                "torchlap.lapify(model), or use a post-hoc method (e.g. method='gradcam')"
            )
        if isinstance(layer, bool) or not isinstance(layer, (str, int)):
            raise TypeError(f"layer must be 'all', a LAP layer name or an index, got {layer!r}")
        if isinstance(layer, str) and layer != "all" and layer not in self._laps:
            raise ValueError(f"{layer!r} is not a LAP layer; LAP layers: {list(self._laps)}")
        if isinstance(layer, int) and not -len(self._laps) <= layer < len(self._laps):
            raise ValueError(f"layer index {layer} out of range: the model has {len(self._laps)}")
        if (
            head is not None
            and head != "score"
            and (isinstance(head, bool) or not isinstance(head, int) or head < 0)
        ):
            raise ValueError(f"head must be None, an int >= 0 or 'score', got {head!r}")
        # NaN fails too: Algorithm 1 compares probabilities; no float() of a str or bool
        decay = check_fraction(decay, "decay")
        threshold = check_number(
            threshold, "threshold", minimum=0.0, maximum=1.0, accepted=THRESHOLDS
        )
        check_choice(variant, "variant", LAP_ALL_VARIANTS)
        check_bool(include_common, "include_common")
        self._concept_sets = concept_mapping(concept_sets)
        self._members: dict[tuple[int, int, torch.device], Tensor | None] = {}
        if self._concept_sets is not None:
            check_fits_a_layer(self._concept_sets, self._laps)
        self.variant = variant
        self.include_common = include_common
        self.layer = layer
        self.head = head
        self.decay = decay
        self.threshold = threshold

    @property
    def concept_sets(self) -> Mapping | None:
        """The ``concept_sets`` option as a mapping class -> concept indices (None: not given)."""
        return self._concept_sets

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        clear_attention_maps(self.model)
        with torch.no_grad():
            logits = self.forward(images)
        target = self.resolve_target(target, logits)
        found = attention_maps(self.model)
        if not found:
            raise ValueError("no LAP layer ran in the forward pass")
        selected = {
            name: self._select(maps, target, logits.shape[1]) for name, maps in found.items()
        }
        if self.layer == "all":
            return lap_all(list(selected.values()), self.decay, self.threshold, self.variant)
        names = list(selected)
        if isinstance(self.layer, int) and not -len(names) <= self.layer < len(names):
            raise ValueError(
                f"layer index {self.layer} is out of range: {len(names)} of the model's "
                f"{len(self._laps)} LAP layers ran in the forward pass ({', '.join(names)}; "
                f"skipped: {', '.join(n for n in self._laps if n not in selected)}), and the "
                "index counts those in forward order; pass a layer name or an index in range"
            )
        name = names[self.layer] if isinstance(self.layer, int) else self.layer
        if name not in selected:
            raise ValueError(f"LAP layer {name!r} did not run in the forward pass")
        return selected[name]

    def _select(self, maps: LapMaps, target: Tensor, num_classes: int) -> Tensor:
        """:func:`select_lap_map` with this explainer's options; the concept sets' membership
        table is built once per (classes, heads, device), not on every batch and layer (a loop
        over the classes and a copy to the device)."""
        if self.head is not None or self._concept_sets is None:
            sets = self._concept_sets
            return select_lap_map(maps, target, num_classes, self.head, sets, self.include_common)
        key = (num_classes, maps.concepts.shape[1], maps.concepts.device)
        if key not in self._members:
            members = _concept_members(self._concept_sets, num_classes, key[1])
            self._members[key] = None if members is None else members.to(key[2])
        return _map_of_targets(maps, target, num_classes, self._members[key], self.include_common)

    @property
    def lap_layers(self) -> dict[str, LapBase]:
        """The model's LAP layers by name."""
        return dict(self._laps)
