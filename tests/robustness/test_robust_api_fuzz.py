"""The public Python API under bad input, swept by the fuzzer of ``api_fuzz``: every argument
of every spec'd callable (``api_fuzz_specs*``) replaced in turn by each bad value derived from
its type must be refused (TypeError/ValueError or the project's errors) with a message naming
the argument, before any model pass; a non-contiguous or channels-last tensor must give the
valid call's result. Hand-written cases of earlier sweeps: test_robust_api_sweep.py."""

from __future__ import annotations

import importlib
import inspect

import api_fuzz
import api_fuzz_specs
import api_fuzz_specs_methods
import api_fuzz_specs_models
import api_fuzz_specs_more
import api_fuzz_specs_runs
import pytest
import torch

SPECS = [
    *api_fuzz_specs.SPECS,
    *api_fuzz_specs_models.SPECS,
    *api_fuzz_specs_methods.SPECS,
    *api_fuzz_specs_more.SPECS,
    *api_fuzz_specs_runs.SPECS,
]
SWEPT_PACKAGES = (
    "torchlap",
    "torchlap.layers",
    "torchlap.metrics",
    "torchlap.losses",
    "torchlap.explainers",
    "torchlap.models",
    "torchlap.data",
    "torchlap.report",
    "torchlap.io",
    "torchlap.runs",
    "torchlap.export",
    "torchlap.evaluate",
    "torchlap.train",
)


def _cases(slow: bool) -> list[object]:
    """The fast sweep: every bad value of the specs not marked slow; the slow one: those of the
    slow specs, and the further dtypes of every tensor argument of all specs."""
    found = [
        pytest.param(spec, name, label, id=f"{spec.id}-{name}-{label}")
        for spec in SPECS
        if spec.slow == slow
        for name, label in api_fuzz.cases(spec)
    ]
    if slow:
        found += [
            pytest.param(spec, name, label, id=f"{spec.id}-{name}-{label}")
            for spec in SPECS
            for name, label in api_fuzz.cases(spec, exhaustive=True)
        ]
    return found


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.id for spec in SPECS])
def test_the_valid_arguments_are_valid(spec: api_fuzz.Spec) -> None:
    spec.call(**spec.args())


@pytest.mark.parametrize(("spec", "name", "label"), _cases(slow=False))
def test_a_bad_argument_is_refused_naming_it(spec: api_fuzz.Spec, name: str, label: str) -> None:
    assert api_fuzz.outcome(spec, name, label) in api_fuzz.expected(spec, name, label)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "name", "label"), _cases(slow=True))
def test_a_bad_argument_is_refused_naming_it_slow(
    spec: api_fuzz.Spec, name: str, label: str
) -> None:
    assert api_fuzz.outcome(spec, name, label) in api_fuzz.expected(spec, name, label)


def test_every_allowance_names_a_fuzzed_case() -> None:
    """An allowance for a case no longer generated (a renamed argument) would hide nothing and
    mislead: each must match a case of its spec."""
    stale = [
        (spec.id, name, label)
        for spec in SPECS
        for name, labels in spec.allow.items()
        for label in labels
        if (name, label) not in api_fuzz.cases(spec)
    ]
    assert not stale


def test_every_public_callable_is_fuzzed_or_says_why_not() -> None:
    """Each callable of the packages' ``__all__`` has a spec (called directly, or through a
    function of the same parameters named by the spec's id: ``PhaseConfig``,
    ``LearnedConceptPredictor.fit``) or a reason in ``NOT_FUZZED``."""
    covered = {spec.call for spec in SPECS}
    named = {spec.id.split(".")[0].split("-")[0] for spec in SPECS}
    missing = []
    for module_name in SWEPT_PACKAGES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if not callable(value) or value in covered or name in named:
                continue
            if inspect.isclass(value) and issubclass(value, BaseException):
                continue
            if name not in api_fuzz_specs_models.NOT_FUZZED:
                missing.append(f"{module_name}.{name}")
    assert not missing


def test_the_fuzzer_catches_an_internal_error_and_an_unnamed_refusal() -> None:
    """The fuzzer itself: a call failing deep inside, or refusing without naming the argument,
    is reported as a fault, not as a refusal."""

    def deep(maps: torch.Tensor) -> torch.Tensor:
        return maps[:, 0, 0].item() if maps.dim() == 3 else maps.sum()  # type: ignore[return-value]

    def unnamed(maps: torch.Tensor) -> torch.Tensor:
        if not isinstance(maps, torch.Tensor):
            raise TypeError("expected a tensor")
        return maps

    deep_spec = api_fuzz.Spec("deep", deep, lambda: {"maps": torch.rand(3, 4, 4)})
    unnamed_spec = api_fuzz.Spec("unnamed", unnamed, lambda: {"maps": torch.rand(3, 4, 4)})
    assert api_fuzz.outcome(deep_spec, "maps", "meta").startswith("RuntimeError")
    assert api_fuzz.outcome(unnamed_spec, "maps", "text").startswith("unnamed TypeError")
    assert api_fuzz.outcome(unnamed_spec, "maps", "nan") == "accepted"
