"""What the restore tests compare: a model's state (each submodule's flags, hooks, parameters
with their ``requires_grad`` and ``.grad``, buffers, children, attributes) and the process's
(grad and inference mode, function modes, default dtype, threads, deterministic flag, autocast,
random state, environment, global module hooks), and the faults they inject (a forward raising
at its call N, a backward raising for one class, a KeyboardInterrupt from a user's hook)."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.overrides import _get_current_function_mode_stack


class BoomError(RuntimeError):
    pass


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        raise BoomError("failure in the backward pass of class 1's logit")


class BackwardRaisesForClassOne(nn.Module):
    """Logits unchanged; the gradient of class 1's logit raises (target 1: backward fails)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([logits[:, :1], _RaiseInBackward.apply(logits[:, 1:2]), logits[:, 2:]], 1)


class RaisesOnCall(nn.Module):
    """Identity for ``ok`` calls, then raises (a model failing midway)."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok, self.calls = ok, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.ok:
            raise BoomError("failure inside the model's forward")
        return x


def mixed_flags(model: nn.Module) -> nn.Module:
    """Every other submodule in eval mode, the rest in train mode."""
    model.train()
    for index, module in enumerate(model.modules()):
        if index % 2:
            module.training = False
    return model


def interrupt_from_a_hook(model: nn.Module, at: int) -> None:
    """A user's forward hook on the first convolution: KeyboardInterrupt at its call ``at``."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    calls = []

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        calls.append(1)
        if len(calls) >= at:
            raise KeyboardInterrupt

    conv.register_forward_hook(hook)


def _clone(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.clone()


def model_state(model: nn.Module) -> list:
    rows = []
    for name, module in model.named_modules():
        hooks = (
            list(module._forward_hooks.values()),
            list(module._forward_pre_hooks.values()),
            list(module._backward_hooks.values()),
            list(module._backward_pre_hooks.values()),
        )
        parameters = [
            (key, p, p.requires_grad, p.detach().clone(), p.grad, _clone(p.grad))
            if p is not None
            else (key, None)
            for key, p in module._parameters.items()
        ]
        buffers = [(key, b if b is None else b.clone()) for key, b in module._buffers.items()]
        rows.append(
            (name, module, module.training, getattr(module, "inplace", None), hooks, parameters,
             buffers, dict(module._modules), sorted(vars(module)))
        )  # fmt: skip
    return rows


def process_state() -> tuple:
    return (
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        len(_get_current_function_mode_stack()),
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_autocast_enabled("cpu"),
        torch.get_rng_state(),
        dict(os.environ),
        [len(getattr(module_globals, name)) for name in dir(module_globals) if "global_" in name
         and name.endswith("hooks")],
    )  # fmt: skip


def assert_same(before: list, after: list) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        name = old[0] or "the model"
        assert old[1] is new[1], f"{name}: the module was swapped"
        assert old[2:4] == new[2:4], f"{name}: flags {old[2:4]} became {new[2:4]}"
        assert old[4] == new[4], f"{name}: hooks changed"
        for p_old, p_new in zip(old[5], new[5], strict=True):
            assert p_old[:3] == p_new[:3], f"{name}.{p_old[0]}: parameter object or flag changed"
            if len(p_old) > 3:
                assert torch.equal(p_old[3], p_new[3]), f"{name}.{p_old[0]}: values changed"
                assert p_old[4] is p_new[4], f"{name}.{p_old[0]}: its .grad was replaced"
                same = p_old[5] is None or torch.equal(p_old[5], p_new[5])
                assert same, f"{name}.{p_old[0]}: its .grad changed"
        assert len(old[5]) == len(new[5]) and len(old[6]) == len(new[6]), name
        for b_old, b_new in zip(old[6], new[6], strict=True):
            assert b_old[0] == b_new[0] and (b_old[1] is None) == (b_new[1] is None), name
            if b_old[1] is not None:
                assert torch.equal(b_old[1], b_new[1]), f"{name}.{b_old[0]}: buffer changed"
        assert old[7] == new[7], f"{name}: children changed"
        assert old[8] == new[8], f"{name}: attributes changed"


def assert_process_same(before: tuple, after: tuple) -> None:
    rng_old, rng_new = before[7], after[7]
    assert torch.equal(rng_old, rng_new), "the global random state changed"
    assert before[:7] + before[8:] == after[:7] + after[8:]


def freeze_some(model: nn.Module) -> nn.Module:
    """Every third parameter frozen (``requires_grad=False``), the others left trainable: the
    restore checks then see both flags, and a method that switched every one on (or off) for
    its own gradients would be caught."""
    for index, parameter in enumerate(model.parameters()):
        if index % 3 == 0:
            parameter.requires_grad_(False)
    return model


def plain_cnn() -> nn.Sequential:
    """A seeded small CNN without LAP layers: conv-BN-ReLU, conv-ReLU, global average pool."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
