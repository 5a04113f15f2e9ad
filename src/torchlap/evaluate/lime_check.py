"""Paper 002's LIME check (section 4.3) in an evaluation: its baseline run, whether it runs,
and its results, cached like a method's in ``methods/lime_spearman.json`` under a fingerprint
of everything they depend on (the evaluation options, the LIME check's own options off their
defaults, the run's weights, the evaluated data, the LIME baseline run); the computation
itself is :func:`torchlap.evaluate.bla_comparison.lime_section`."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from torchlap.evaluate.bla_comparison import lime_check_settings, lime_grid, lime_section
from torchlap.evaluate.common import fingerprint, model_stamp, read_cache, write_cache
from torchlap.evaluate.options import EvaluateOptions
from torchlap.evaluate.provenance import check_lime_baseline
from torchlap.evaluate.shard import on_rank_zero
from torchlap.explainers import applicability
from torchlap.runs import LoadedRun, load_run

logger = logging.getLogger(__name__)

__all__ = ["lime_applies", "lime_cache_parts", "lime_results", "load_lime_baseline"]


def lime_applies(job: Any) -> bool:
    """Whether paper 002's LIME check runs for ``job`` (an evaluation of core: ``bla`` among
    the methods and applicable to the model, ``lime_images > 0``); when it does, its cells are
    checked on one image (a BLA map of one cell is refused here, before any method runs, not
    after them all)."""
    options = job.options
    if options.lime_images == 0 or "bla" not in options.methods:
        return False
    if applicability("bla", job.model) is not None:
        return False
    lime_grid(job.model, job.test.images[:1].to(job.device), options.lime_patch)
    return True


def lime_cache_parts(job: Any) -> dict[str, Any]:
    """What the LIME check's result depends on, the parts of its cache key: the evaluation
    options (``methods`` aside), the weights, the data, the baseline run and, when any differs
    from its default, the check's LIME and Grad-CAM options (``lime_options``; a result
    computed with the defaults keeps the key it had before the options existed)."""
    options = asdict(job.options) | {"methods": None}
    settings = lime_check_settings(options.pop("lime_options"))
    baseline = job.lime_baseline
    parts = {
        "lime": True,
        "options": options,
        "weights": job.stamp,
        "data": job.data_key,
        "baseline": None if baseline is None else model_stamp(baseline),
    }
    if settings:
        parts["lime_options"] = settings
    return parts


def lime_results(job: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``results["lime_spearman"]``, cached like a method (recomputed when a part of
    :func:`lime_cache_parts` changed, the log saying which), and ``results["lime_reference"]``:
    which model LIME and Grad-CAM explained (also noted in the report)."""
    baseline = job.lime_baseline
    if baseline is None:
        reference: dict[str, Any] = {"model": "the BLA model itself"}
        note = (
            "LIME rank correlation (paper 002, section 4.3): LIME and Grad-CAM computed on the "
            "BLA model itself, not on an uninterpretable baseline as in the paper; pass "
            "--lime-baseline RUN (a vanilla run of the same data), or compare with one"
        )
    else:
        name = baseline.run_dir.resolve().name
        reference = {"model": "baseline run", "run": name, "run_dir": str(baseline.run_dir)}
        note = (
            "LIME rank correlation (paper 002, section 4.3): LIME and Grad-CAM computed on the "
            f"uninterpretable baseline run {name}"
        )
    job.notes.setdefault("bla", []).append(note)
    logger.info("%s", note)
    cache = job.out_dir / "methods" / "lime_spearman.json"
    parts = lime_cache_parts(job)
    key = fingerprint(parts)
    lime = None if job.force else read_cache(cache, key, "lime_spearman", parts)
    if lime is None:
        labels = job.test.labels if job.options.target == "label" else None
        reference_model = None if baseline is None else baseline.model
        lime = on_rank_zero(
            lambda: lime_section(
                job.model, job.test.images, labels, job.options, job.device, reference_model
            )
        )
        write_cache(cache, key, parts, lime)
    return lime, reference


def load_lime_baseline(
    run: Any, model: nn.Module, options: EvaluateOptions, path: Any, device: torch.device
) -> Any:
    """The vanilla run paper 002's LIME check explains for a BLA run (``--lime-baseline``: a
    run folder, or the run loaded already, as compare passes one of its runs), checked before
    any work; ``None`` without one."""
    if path is None:
        return None
    if "bla" not in options.methods or options.lime_images == 0 or applicability("bla", model):
        named = path.run_dir if isinstance(path, LoadedRun) else path
        raise ValueError(
            f"--lime-baseline {named}: it is the baseline of paper 002's LIME check, which runs "
            "for a BLA run evaluated with bla among --methods and --lime-images > 0"
        )
    baseline = path if isinstance(path, LoadedRun) else load_run(path)
    check_lime_baseline(run.config, baseline, "--lime-baseline")
    baseline.model.to(device).eval()
    return baseline
