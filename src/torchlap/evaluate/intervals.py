"""The bootstrap intervals of an evaluation: how sure each mean and each verdict is.

After every method has run, from the per-image scores each method's results keep
(``per_sample``: cached with the method, so changing the bootstrap settings recomputes no map;
a localization metric under its name, ``"iou_topk"``, a faithfulness metric under its path in
the ``faithfulness`` section after :data:`FAITHFULNESS_PREFIX`, ``"faithfulness/drop"``,
``"faithfulness/keep_top_k/10/top1_vs_label"``):

- ``results["localization"][method][metric]["interval"]`` and
  ``results["faithfulness"][method][...]["interval"]``: the percentile bootstrap interval of
  the metric's mean over the evaluated images (:func:`torchlap.metrics.bootstrap_interval`);
- ``results["paired"]``: for every evaluated method whose map is the model's own (kind ``"own
  map"``: LAP, BLA, the ante-hoc network, B-cos), the mean per-image difference ``own - other``
  of every such metric (keyed as in ``per_sample``) against every other method, with its
  interval (:func:`torchlap.metrics.paired_difference`). For IoU this is paper 000's Table II
  claim ("LAP's maps localize better than every post-hoc method") asked of the images at hand:
  an interval above 0 says the lead is not the chance of which images were drawn; for a
  lower-is-better metric (Drop%) a lead is an interval below 0.

Both use ``options.bootstrap_resamples`` draws (0: neither is written),
``options.bootstrap_level`` and ``options.seed``; ``results["paired"]`` records them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from torchlap.explainers import get
from torchlap.metrics import bootstrap_interval, paired_difference

__all__ = ["FAITHFULNESS_PREFIX", "add_intervals", "check_per_sample"]

#: the prefix of a faithfulness metric's per-image scores in ``per_sample`` (then its path in
#: the method's ``faithfulness`` section: ``"faithfulness/keep_top_k/10/top1_vs_label"``)
FAITHFULNESS_PREFIX = "faithfulness/"

#: the explainer kind whose maps are paired against every other method's
PAIRED_KIND = "own map"


def _scores(values: Sequence[float | None]) -> Tensor:
    """Per-image scores as results.json keeps them (``None``: an excluded image) as a tensor."""
    return torch.tensor([float("nan") if v is None else float(v) for v in values],
                        dtype=torch.float64, device="cpu")  # fmt: skip


def check_per_sample(cached: Mapping[str, Any], n_images: int) -> None:
    """``TypeError`` unless a method's cached results hold ``per_sample`` (metric -> per-image
    scores: ``n_images`` numbers or None) wherever they hold ``localization`` or
    ``faithfulness``."""
    per_sample = cached.get("per_sample")
    if "localization" in cached and not isinstance(per_sample, dict):
        # (results cached by torchlap before the bootstrap intervals kept IoU top-K only)
        raise TypeError("its localization has no per-image scores (results['per_sample'])")
    if "faithfulness" in cached and not any(
        str(name).startswith(FAITHFULNESS_PREFIX) for name in (per_sample or {})
    ):  # (cached before the faithfulness metrics had intervals)
        raise TypeError("its faithfulness has no per-image scores (results['per_sample'])")
    for name, values in (per_sample or {}).items():
        if (
            not isinstance(values, list)
            or len(values) != n_images
            or any(
                v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                for v in values
            )
        ):
            raise TypeError(
                f"results['per_sample'][{name!r}] must be a list of {n_images} numbers or None "
                "(one per evaluated image)"
            )


def _entry(results: Mapping[str, Any], method: str, key: str) -> dict[str, Any] | None:
    """The metric entry of ``results`` that ``per_sample[key]`` scores (a localization metric
    by name, a faithfulness metric by its prefixed path), or ``None``."""
    if not key.startswith(FAITHFULNESS_PREFIX):
        entry = results.get("localization", {}).get(method, {}).get(key)
        return entry if isinstance(entry, dict) and "value" in entry else None
    return _find(results.get("faithfulness", {}).get(method),
                 key.removeprefix(FAITHFULNESS_PREFIX).split("/"))  # fmt: skip


def _find(node: Any, parts: list[str]) -> dict[str, Any] | None:
    """The metric entry at ``parts`` below ``node``; a key may hold ``/`` itself (the
    ``drop_inc_win`` section's ``"energy/win_pct"``)."""
    if not parts:
        return node if isinstance(node, dict) and "value" in node else None
    if not isinstance(node, dict):
        return None
    for i in range(len(parts), 0, -1):
        key = "/".join(parts[:i])
        if key in node:
            return _find(node[key], parts[i:])
    return None


def add_intervals(
    results: dict[str, Any],
    per_sample: Mapping[str, Mapping[str, Sequence[float | None]]],
    options: Any,
) -> None:
    """Write the intervals into ``results`` (see the module): ``per_sample`` maps each method to
    its localization metrics' per-image scores; ``options`` an
    :class:`~torchlap.evaluate.EvaluateOptions`."""
    if options.bootstrap_resamples == 0:
        return
    settings = {
        "level": options.bootstrap_level,
        "resamples": options.bootstrap_resamples,
        "seed": options.seed,
    }
    scores = {
        method: {metric: _scores(values) for metric, values in metrics.items()}
        for method, metrics in per_sample.items()
    }
    for method, metrics in scores.items():
        for metric, values in metrics.items():
            entry = _entry(results, method, metric)
            if entry is not None:
                entry["interval"] = bootstrap_interval(values, **settings)
    references = [method for method in scores if get(method).kind == PAIRED_KIND]
    if not references:
        return
    paired: dict[str, Any] = {}
    for reference in references:
        own = scores[reference]
        paired[reference] = {
            metric: {
                other: paired_difference(values, scores[other][metric], **settings)
                for other in scores
                if other != reference and metric in scores[other]
            }
            for metric, values in own.items()
        }
    results["paired"] = {**settings, "references": paired}
