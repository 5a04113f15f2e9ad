"""A KeyboardInterrupt that arrives while torchlap registers a hook (torch has stored the hook,
its handle has not reached torchlap's list yet) still leaves no hook behind.

torch's ``register_forward_hook`` is patched so that its K-th call from torchlap's own code
stores the hook and then raises KeyboardInterrupt instead of returning the handle: the code
that removed its hooks through the handles it had kept (``handles.append(module.register_...``
inside ``try``/``finally``) left that one hook on the user's model for good. Every K from the
first registration to the last is tried, for every explainer of the comparison and every
library call that hooks a user's model; the model must come back exactly (hooks, flags,
parameters, buffers, children) and the process too. The explanation context is held to the
same when the interrupt comes right after it switched the model, or while it takes its hooks
off at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

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
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bcos import bcos_available, build_bcos

SIDE = 16
#: calls that run the model in its own mode: given an eval model
EVAL_ONLY = ("folded_batch_norms", "antehoc_forward")
FAST = {
    "rise": {"n_masks": 8, "mask_batch_size": 2},
    "scorecam": {"mask_batch_size": 8},
    "sise": {"mu": 0.5},
}


def lap_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    relu = nn.ReLU()  # one module run twice: DeepLIFT's per-call stand-in hooks the model
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        relu,
        LocalAttentionPool2d(8, 2),
        nn.Conv2d(8, 8, 3, padding=1),
        relu,
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def interrupting(monkeypatch: pytest.MonkeyPatch, at: int) -> list[int]:
    """Patch nn.Module's forward and forward-pre hook registration: the ``at``-th call from
    torchlap's code stores the hook, then raises KeyboardInterrupt. Returns the call counter."""
    count = [0]

    def patched(real: Callable) -> Callable:
        def register(module: nn.Module, hook: Callable, *args: object, **kwargs: object):
            handle = real(module, hook, *args, **kwargs)
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("torchlap."):
                count[0] += 1
                if count[0] == at:
                    raise KeyboardInterrupt  # the hook is on the module, its handle is lost
            return handle

        return register

    for name in ("register_forward_hook", "register_forward_pre_hook"):
        monkeypatch.setattr(nn.Module, name, patched(getattr(nn.Module, name)))
    return count


def calls() -> dict[str, Callable[[], tuple[nn.Module, Callable[[nn.Module], object]]]]:
    """name -> a builder of (model, the call on it)."""
    from torchlap.explainers import probe_features
    from torchlap.models import blaify, folded_batch_norms, lapify

    images = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))

    def explained(method: str, model: Callable[[], nn.Module] = lap_cnn) -> Callable:
        def build() -> tuple[nn.Module, Callable]:
            explainer = explainers.get(method)
            return model(), lambda m: explainer(m, **FAST.get(method, {}))(images)

        return build

    peers = {
        "bla": lambda: blaify(plain_cnn(), input_size=SIDE, k=4)[0],
        "antehoc": lambda: AnteHocModel(plain_cnn(), eta=2),
    }
    if bcos_available():  # pragma: no branch - the extra is installed
        peers["bcos"] = lambda: build_bcos("resnet18", 3, in_channels=3)

    def folded(model: nn.Module) -> None:
        with folded_batch_norms(model, images[:1]):
            model(images)

    table = {f"explain_{m}": explained(m) for m in explainers.comparison_methods()}
    table.update({f"explain_{m}": explained(m, build) for m, build in peers.items()})
    table.update(
        {
            "probe_features": lambda: (lap_cnn(), lambda m: probe_features(m, images[:1], [])),
            "lapify": lambda: (plain_cnn(), lambda m: lapify(m, input_size=SIDE)),
            "blaify": lambda: (plain_cnn(), lambda m: blaify(m, input_size=SIDE)),
            "folded_batch_norms": lambda: (plain_cnn(), folded),
            "antehoc_forward": lambda: (AnteHocModel(plain_cnn(), eta=2), lambda m: m(images)),
        }
    )
    return table


@pytest.mark.parametrize("name", sorted(calls()))
def test_an_interrupt_during_hook_registration_leaves_no_hook(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted = 0
    for at in range(1, 200):
        model, run = calls()[name]()
        # half the runs with half the model in train mode, but where the call is a forward in
        # the model's own mode (a training batch norm updates its statistics: not a fault)
        if at % 2 and name not in EVAL_ONLY:
            mixed_flags(model)
        freeze_some(model.eval() if name in EVAL_ONLY else model)
        with monkeypatch.context() as patch:
            count = interrupting(patch, at)
            before, process = model_state(model), process_state()
            try:
                run(model)
                finished = True
            except KeyboardInterrupt:
                finished = False
        if name in ("lapify", "blaify") and finished:
            break  # they change the model when they succeed (that is what they are for)
        assert_same(before, model_state(model))
        if name not in ("lapify", "blaify"):  # they build layers, whose constructors draw
            assert_process_same(process, process_state())
        if finished:
            assert count[0] < at  # every registration of this call was interrupted once
            break
        interrupted += 1
    else:
        pytest.fail(f"{name} still registered hooks after 199 interrupted calls")
    print("INTERRUPTED", name, interrupted)
    assert interrupted >= 1, f"{name} registered no hook through torchlap's code"


def test_hooks_remove_only_their_own_registrations() -> None:
    """The same function registered by the user and through ``Hooks``: one entry comes off,
    the user's stays (with its kwargs flag); a hook already removed through its handle is not
    looked for twice; a handle given to ``keep`` is removed too."""
    from torchlap._hooks import Hooks

    conv = nn.Conv2d(1, 1, 1)
    seen: list[str] = []

    def hook(*args: object, **kwargs: object) -> None:
        seen.append("hook")

    user = conv.register_forward_hook(hook, with_kwargs=True)
    hooks = Hooks()
    hooks.forward(conv, hook)
    spent = hooks.forward_pre(conv, lambda module, args: None)
    spent.remove()
    hooks.keep(conv.register_forward_hook(lambda module, args, output: None))
    assert len(conv._forward_hooks) == 3 and len(hooks) == 3
    hooks.remove()
    assert list(conv._forward_hooks) == [user.id]
    assert dict(conv._forward_hooks_with_kwargs) == {user.id: True}
    assert not conv._forward_pre_hooks and len(hooks) == 0
    conv(torch.rand(1, 1, 2, 2))
    assert seen == ["hook"]


def _lock_is_free(model: nn.Module) -> bool:
    """Whether another thread can take the model's explanation lock (it is reentrant: this
    thread could take it even while it leaked)."""
    import threading

    from torchlap.explainers.exclusive import model_lock

    lock, got = model_lock(model), []

    def take() -> None:
        got.append(lock.acquire(timeout=5))
        if got[-1]:
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return got == [True]


@pytest.mark.parametrize("where", ["after_start", "removing_hooks"])
def test_an_interrupt_entering_or_leaving_the_explanation_context(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt right after the explanation context switched the model (before its
    depth was counted), or while its hooks come off at the end: the model's flags and maps
    come back and the model's lock is released. Before: the first left the model in eval
    mode with its in-place flags off and the lock held (another thread explaining the model
    waited forever); the second skipped the flags' restore."""
    from torchlap._hooks import Hooks
    from torchlap.explainers.base import Explainer

    model = freeze_some(mixed_flags(lap_cnn()))
    images = torch.rand(2, 3, SIDE, SIDE)
    target = {"after_start": (Explainer, "_start"), "removing_hooks": (Hooks, "remove")}[where]
    real = getattr(*target)
    fired = []

    def then_interrupt(self: object) -> None:
        callers = (sys._getframe(1).f_code.co_name, sys._getframe(2).f_code.co_name)
        real(self)
        if not fired and (where == "after_start" or "__exit__" in callers):
            fired.append(1)
            raise KeyboardInterrupt

    before, process = model_state(model), process_state()
    explainer = explainers.GradCam(model)
    with monkeypatch.context() as patch:
        patch.setattr(*target, then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            explainer(images)
    assert fired
    assert_same(before, model_state(model))
    assert_process_same(process, process_state())
    assert _lock_is_free(model)
    assert explainer(images).shape == (2, SIDE, SIDE)  # and the explainer works again
