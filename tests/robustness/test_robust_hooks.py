"""torchlap._hooks on its own: a ``Hooks`` used as a ``with`` block takes its hooks off at the
end of the block, also when the block raises, and ``kept_training_flags`` puts every module's
train/eval flag back, also when the block raises (the interrupted registrations are tested in
test_robust_restore_registration.py and test_robust_restore_lines.py)."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import nn

from torchlap._hooks import Hooks, kept_training_flags


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 1, 1))


@pytest.mark.parametrize("fails", [False, True])
def test_a_with_block_takes_its_hooks_off_however_it_ends(fails: bool) -> None:
    """One forward and one forward-pre hook, each the only one of its function on its module;
    during the block both fire."""
    net = _net()
    seen: list[str] = []
    expected = pytest.raises(RuntimeError, match="stop") if fails else nullcontext()
    with expected, Hooks() as hooks:
        hooks.forward(net[0], lambda module, args, output: seen.append("after 0"))
        hooks.forward_pre(net[2], lambda module, args: seen.append("before 2"))
        assert len(hooks) == 2
        net(torch.rand(1, 1, 2, 2))
        if fails:
            raise RuntimeError("stop")
    assert seen == ["after 0", "before 2"] and len(hooks) == 0
    for module in net:
        assert not module._forward_hooks and not module._forward_pre_hooks
    net(torch.rand(1, 1, 2, 2))
    assert seen == ["after 0", "before 2"]


def test_the_same_function_registered_twice_through_hooks_comes_off_twice() -> None:
    conv = nn.Conv2d(1, 1, 1)
    calls = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls.append(1)

    hooks = Hooks()
    hooks.forward(conv, hook)
    hooks.forward(conv, hook)
    conv(torch.rand(1, 1, 2, 2))
    assert len(calls) == 2
    hooks.remove()
    assert not conv._forward_hooks


@pytest.mark.parametrize(
    ("kind", "flag"),
    [("forward", "with_kwargs"), ("forward", "always_call"), ("forward_pre", "with_kwargs")],
)
def test_a_users_flagged_registration_of_the_same_function_stays(kind: str, flag: str) -> None:
    """The user registers torchlap's hook function again, later and with a flag: removing
    torchlap's hooks takes off torchlap's plain entry and leaves the user's, flag and all (it
    used to take the latest entry, the user's, and strip its flag)."""
    conv = nn.Conv2d(1, 1, 1)
    calls: list[int] = []

    def hook(module: nn.Module, args: tuple, *rest: object) -> None:
        calls.append(len(rest))

    hooks = Hooks()
    getattr(hooks, kind)(conv, hook)
    register = getattr(conv, f"register_{kind}_hook")
    user = register(hook, **{flag: True})
    hooks.remove()
    main = conv._forward_hooks if kind == "forward" else conv._forward_pre_hooks
    assert list(main) == [user.id]
    flagged = {
        ("forward", "with_kwargs"): conv._forward_hooks_with_kwargs,
        ("forward", "always_call"): conv._forward_hooks_always_called,
        ("forward_pre", "with_kwargs"): conv._forward_pre_hooks_with_kwargs,
    }[kind, flag]
    assert list(flagged) == [user.id]
    conv(torch.rand(1, 1, 2, 2))
    # a forward hook gets (output) or (kwargs, output), a pre hook () or (kwargs)
    assert calls == [(kind == "forward") + (flag == "with_kwargs")]
    user.remove()
    assert not main


@pytest.mark.parametrize("fails", [False, True])
def test_training_flags_come_back_however_the_block_ends(fails: bool) -> None:
    """Mixed flags (the model in training, one child in eval mode): the block switches them
    all, the end of the block restores each."""
    net = _net().train()
    net[1].eval()
    expected = pytest.raises(ValueError, match="stop") if fails else nullcontext()
    with expected, kept_training_flags(net):
        net.eval()
        net[2].train()
        if fails:
            raise ValueError("stop")
    assert [m.training for m in net.modules()] == [True, True, False, True]
