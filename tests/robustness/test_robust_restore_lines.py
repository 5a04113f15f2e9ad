"""A KeyboardInterrupt at any line of the code that changes a user's model before its
protected work starts (the setup of torchlap's context managers up to their ``yield``, the
probes up to their cleanup) leaves the model and the process as they were.

A trace function raises KeyboardInterrupt at the chosen line of the chosen function (its first
or second execution: loops register hooks or swap modules one at a time), which is where a
Ctrl-C may land. The lines of ``finally`` blocks and ``except`` handlers are the cleanup
itself and are not interrupted (no code can restore state while its own restore is being
interrupted). Before: DeepLIFT's stand-ins for shared nonlinearities were put into the model
before they were written down (an interrupt between the two left a stand-in in the model for
good), and the masked forwards' context (in-place flags, batch norms folded into their
convolutions) was set up by a function that returned it, so an interrupt between that
function's return and the ``with`` statement left the batch norms folded.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from types import CodeType

import pytest
import torch
from restore_state import (
    assert_process_same,
    assert_same,
    freeze_some,
    mixed_flags,
    model_state,
    plain_cnn,
    process_state,
)
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, explainers

SIDE = 16


def lap_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    relu = nn.ReLU(inplace=True)  # one module run twice: DeepLIFT swaps in per-call copies
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        relu,
        LocalAttentionPool2d(8, 2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        relu,
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def setup_lines(function: Callable) -> tuple[CodeType, list[tuple[int, int]]]:
    """The code object of ``function`` (unwrapped) and the lines of its statements that run
    before its protected work: up to the first ``yield`` (a context manager's setup), never a
    line of a ``finally`` block or an ``except`` handler; each with the number of its runs
    that are setup (a loop's line: 2 interrupted, the first and second pass)."""
    function = inspect.unwrap(function)
    code = function.__code__
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    cleanup: set[int] = set()
    stop = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for part in [*node.finalbody, *node.handlers]:
                cleanup.update(range(part.lineno, part.end_lineno + 1))
        if isinstance(node, (ast.Yield, ast.YieldFrom)) and (stop is None or node.lineno < stop):
            stop = node.lineno
    # a ``try:`` line does no work, and CPython 3.11 skips the enclosing ``finally`` for an
    # exception a trace function raises at it (a signal is only ever raised at calls and
    # jumps): not interrupted
    lines = sorted(
        {
            node.lineno
            for node in ast.walk(tree.body[0])
            if isinstance(node, ast.stmt)
            and not isinstance(node, ast.Try)
            and node is not tree.body[0]
        }
    )
    lines = [n for n in lines if n not in cleanup and (stop is None or n < stop)]
    # a ``with`` line runs again when its block ends: that second run is its cleanup
    withs = {node.lineno for node in ast.walk(tree) if isinstance(node, ast.With)}
    offset = code.co_firstlineno - 1
    return code, [(offset + n, 1 if n in withs else 2) for n in lines]


def run_interrupted(code: CodeType, line: int, hit: int, call: Callable[[], object]) -> bool:
    """``call()`` with a KeyboardInterrupt at the ``hit``-th execution of ``line`` of
    ``code``; whether it fired (the line ran that often)."""
    hits, fired = [0], [False]

    def local(frame, event, arg):  # sys.settrace's local trace function
        if event == "line" and frame.f_lineno == line:
            hits[0] += 1
            if hits[0] == hit:
                fired[0] = True
                raise KeyboardInterrupt
        return local

    def start(frame, event, arg):
        return local if frame.f_code is code else None

    sys.settrace(start)
    try:
        call()
    except KeyboardInterrupt:
        assert fired[0], "a KeyboardInterrupt the trace did not raise"
    finally:
        sys.settrace(None)
    return fired[0]


def _targets() -> dict[str, tuple[Callable, Callable[[], nn.Module], Callable]]:
    """name -> (the function interrupted, a model builder, the call on the model)."""
    from torchlap._hooks import kept_training_flags
    from torchlap.data.grid import confident_images
    from torchlap.explainers import probe_features
    from torchlap.explainers.base import Explainer
    from torchlap.explainers.gradient import _unshared
    from torchlap.explainers.perturbation import masked_forward_context
    from torchlap.layers._state import kept_last_maps
    from torchlap.metrics import drop_increase
    from torchlap.metrics._common import eval_mode
    from torchlap.metrics.lime_faithfulness import lime_patch_scores
    from torchlap.models import blaify, lapify
    from torchlap.models.antehoc import AnteHocModel, antehoc_pass_two_loss
    from torchlap.models.bla import _probe_feature_shape
    from torchlap.models.folding import folded_batch_norms
    from torchlap.models.lapify_sites import _run_probe

    images = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    labels, maps = torch.tensor([0, 1]), torch.rand(2, SIDE, SIDE)

    def explain(method: str, **options: object) -> Callable:
        return lambda m: explainers.get(method)(m, **options)(images)

    scorecam = explain("scorecam", mask_batch_size=8)
    mixed = lambda: freeze_some(mixed_flags(lap_cnn()))  # noqa: E731
    folding = lambda: freeze_some(lap_cnn().eval())  # noqa: E731 - eval: the folds happen
    plain = lambda: freeze_some(mixed_flags(plain_cnn()))  # noqa: E731
    antehoc = lambda: freeze_some(mixed_flags(AnteHocModel(plain_cnn(), eta=2)))  # noqa: E731
    return {
        "Explainer.__enter__": (Explainer.__enter__, mixed, explain("gradcam")),
        "Explainer._start": (Explainer._start, mixed, explain("gradcam")),
        "kept_last_maps": (kept_last_maps, mixed, explain("gradcam")),
        "_unshared": (_unshared, mixed, explain("deeplift")),
        "in_place_forwards": (Explainer.in_place_forwards, folding, scorecam),
        "masked_forward_context": (masked_forward_context, folding, scorecam),
        "folded_batch_norms": (folded_batch_norms, folding, scorecam),
        "probe_features": (probe_features, mixed, lambda m: probe_features(m, images, [])),
        "kept_training_flags": (
            kept_training_flags,
            mixed,
            lambda m: probe_features(m, images, []),
        ),
        "eval_mode": (eval_mode, mixed, lambda m: drop_increase(m, images, maps, labels)),
        "eval_mode of the LIME check": (
            eval_mode,
            mixed,
            lambda m: lime_patch_scores(m, images[:1], patch=8, n_samples=8),
        ),
        "confident_images": (
            confident_images,
            mixed,
            lambda m: confident_images(m, images, labels),
        ),
        "lapify's dry pass": (_run_probe, plain, lambda m: lapify(m, input_size=SIDE)),
        "blaify's dry pass": (_probe_feature_shape, plain, lambda m: blaify(m, input_size=SIDE)),
        "AnteHocModel._backbone_with_sams": (
            AnteHocModel._backbone_with_sams,
            antehoc,
            lambda m: m.interpretation_map(images),
        ),
        "AnteHocModel._explain_maps": (
            AnteHocModel._explain_maps,
            antehoc,
            lambda m: m.interpretation_map(images),
        ),
        "antehoc_pass_two_loss": (
            antehoc_pass_two_loss,
            antehoc,
            lambda m: antehoc_pass_two_loss(m, images, "eval"),
        ),
    }


@pytest.mark.parametrize("name", sorted(_targets()))
def test_an_interrupt_at_any_setup_line_leaves_the_model_as_it_was(name: str) -> None:
    function, build, call = _targets()[name]
    code, lines = setup_lines(function)
    assert lines, f"{name}: no setup line found"
    fired_at = []
    for line, hits in lines:
        for hit in range(1, hits + 1):
            model = build()
            before, process = model_state(model), process_state()
            if not run_interrupted(code, line, hit, lambda m=model: call(m)):
                break  # the line ran fewer times: the model ran unhindered (checked too)
            fired_at.append((line, hit))
            where = f"{name}: interrupted at line {line} (execution {hit})"
            try:
                assert_same(before, model_state(model))
                if "dry pass" not in name:  # lapify and blaify build layers (they draw) first
                    assert_process_same(process, process_state())
            except AssertionError as error:
                raise AssertionError(f"{where}: {error}") from None
    assert fired_at, f"{name}: no line of its setup ran"
