"""The LAP layers as standalone predictors (paper 000, section IV; Table I), for
``results["lap_predictors"]``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from torchlap.evaluate.common import EvalData, metric
from torchlap.layers import attention_maps, lap_modules
from torchlap.layers._state import kept_last_maps
from torchlap.metrics import (
    LearnedConceptPredictor,
    binary_rule,
    concept_sum_rule,
    lap_predictor_metrics,
    paper_primary_rule,
    top_k_lap_predictor_metrics,
)
from torchlap.metrics._common import eval_mode

__all__ = ["lap_predictor_results"]


@torch.no_grad()
def _concept_summaries(
    model: nn.Module, images: Tensor, batch_size: int, device: torch.device
) -> dict[str, dict[str, Tensor]]:
    """Per LAP layer: concept size features F_C (B, h) and the per-concept maximum (B, h).

    The model runs in eval mode (no batch-norm statistics updated, no dropout draws); every
    module's flag and the LAP layers' last maps are the caller's again afterwards, also on
    error."""
    sums: dict[str, list[Tensor]] = {}
    peaks: dict[str, list[Tensor]] = {}
    with eval_mode(model), kept_last_maps(model):
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size].to(device))
            for name, maps in attention_maps(model).items():
                sums.setdefault(name, []).append(maps.concepts.flatten(2).sum(2).float())
                peaks.setdefault(name, []).append(maps.concepts.flatten(2).amax(2).float())
    return {
        name: {"features": torch.cat(sums[name]), "peaks": torch.cat(peaks[name])} for name in sums
    }


def lap_predictor_results(
    model: nn.Module,
    test: EvalData,
    val: EvalData,
    test_predictions: Tensor,
    concept_sets: Any,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, Any]:
    """LAP layers as standalone predictors (paper 000, section IV; Table I).

    Per layer every rule that applies: ``binary`` (two classes: positive when a pixel of a
    concept present only in the positive class is above 0.5), ``concept_sum`` (every class has
    its own concepts: the class whose concept maps have the larger sum), ``learned`` (a 2-layer
    MLP on F_C, trained on the validation split; with more than 5 classes also its
    ``top5_predictivity``/``top5_faithfulness``). ``rule`` names the primary one, Table I's
    (:func:`torchlap.metrics.paper_primary_rule`: binary, then concept_sum for two classes; the
    learned MLP for more, as the paper's ImageNet), whose metrics stand at the top of the entry.
    """
    if not lap_modules(model):
        return {}
    test_summary = _concept_summaries(model, test.images, batch_size, device)
    val_summary = _concept_summaries(model, val.images, batch_size, device)
    num_classes = len(test.classes)
    mapping = concept_sets.to_mapping() if concept_sets is not None else None
    common = set()
    if concept_sets is not None:
        common = {int(c) for c in torch.nonzero(concept_sets.common).flatten().tolist()}
    results: dict[str, Any] = {}
    for name, summary in test_summary.items():
        rules: dict[str, Any] = {}
        n_concepts = summary["features"].shape[1]
        own = None
        if mapping is not None:
            own = [[c for c in mapping[k] if c not in common] for k in range(num_classes)]
        if num_classes == 2 and own is not None and own[1] and not own[0]:
            peaks = summary["peaks"][:, :, None, None]
            preds = binary_rule(peaks, 0.5, positive_concepts=own[1])
            rules["binary"] = preds
        if own is not None and all(own) and n_concepts >= num_classes:
            preds = concept_sum_rule(summary["features"][:, :, None, None], own)
            rules["concept_sum"] = preds
        if len(val) >= 2 and len(torch.unique(val.labels)) == num_classes:
            predictor = LearnedConceptPredictor(n_concepts, num_classes, seed=seed)
            predictor.fit(val_summary[name]["features"], val.labels)
            rules["learned"] = predictor.predict(summary["features"])
            top_k = predictor.predict_top_k(summary["features"], 5)  # Table I's top-5
        if not rules:
            continue
        entry: dict[str, Any] = {"rules": {}}
        for rule, preds in rules.items():
            values = lap_predictor_metrics(preds.cpu(), test.labels, test_predictions.cpu())
            if rule == "learned" and num_classes > 5:
                ranked = top_k_lap_predictor_metrics(
                    top_k.cpu(), test.labels, test_predictions.cpu()
                )
                values.update({k.replace("/", "_"): v for k, v in ranked.items()})
            entry["rules"][rule] = {key: metric(value) for key, value in values.items()}
        primary = paper_primary_rule(num_classes, list(rules))
        entry = {"rule": primary, **entry["rules"][primary], "rules": entry["rules"]}
        results[name] = entry
    return results
