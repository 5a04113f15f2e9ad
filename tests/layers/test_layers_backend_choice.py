"""Which path LAP's pooling functions take, not only what they compute.

Both paths give the same values (the reference tests hold each to a loop over windows), so a
value test cannot tell when ``backend="torch"`` (the path of every GPU) silently runs the
compiled kernel, or when ``"auto"`` stops using the kernel on the CPU, or hands it tensors it
cannot read (half precision, a non-contiguous layout), or runs it under tracing or export (the
graph would miss the pooling). Here a spy stands in for the kernel library and records every
kernel function asked for, and the values are held to a loop written from paper 000's Eq. 1
and 4 (one window, one pixel at a time).
"""

from __future__ import annotations

import pytest
import torch

import torchlap.layers.functional as functional
from torchlap._ext import lap_kernels
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

needs_kernel = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")
EPS = 1e-6


class _Spy:
    """The kernel library, recording the name of every function taken from it."""

    def __init__(self, library: object) -> None:
        self._library = library
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> object:
        self.asked.append(name)
        return getattr(self._library, name)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    """The library the pooling functions get (a stand-in object when the kernel is not built:
    the torch path must never touch it, and the auto tests that need it are skipped)."""
    recorder = _Spy(lap_kernels() or object())
    monkeypatch.setattr(functional, "lap_kernels", lambda: recorder)
    return recorder


def _window_loop(x, score, kernel, stride, alpha):
    """Eq. 1 and 4 over unpadded windows, one sample, window and pixel at a time."""
    batch, channels, height, width = x.shape
    kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = torch.zeros(batch, channels, out_h, out_w, dtype=torch.float64)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                pixels = [(i * stride + r, j * stride + q) for r in range(kh) for q in range(kw)]
                v = [float(score[b, 0, r, q]) for r, q in pixels]
                peak = max(v)
                w = [torch.exp(torch.tensor(-(alpha**2) * (peak - s) ** 2)) * s + EPS for s in v]
                total = sum(w)
                for c in range(channels):
                    out[b, c, i, j] = (
                        sum(wk * float(x[b, c, r, q]) for wk, (r, q) in zip(w, pixels, strict=True))
                        / total
                    )
    return out


def _inputs(dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 4, generator=generator, dtype=torch.float64).to(dtype)
    score = torch.rand(2, 1, 6, 4, generator=generator, dtype=torch.float64).to(dtype)
    return x.requires_grad_(), score.requires_grad_()


def test_backend_torch_never_asks_for_the_compiled_kernel(spy: _Spy) -> None:
    x, score = _inputs(torch.float64)
    pooled = local_attention_pool2d(x, score, 2, alpha=1.3, backend="torch")
    pooled.square().sum().backward()
    global_pool = adaptive_local_attention_pool2d(x, score, 1, 1.3, backend="torch")
    global_pool.sum().backward()
    assert spy.asked == []
    torch.testing.assert_close(pooled.detach(), _window_loop(x.detach(), score.detach(), 2, 2, 1.3))
    torch.testing.assert_close(
        global_pool.detach(), _window_loop(x.detach(), score.detach(), (6, 4), 1, 1.3)
    )


@needs_kernel
@pytest.mark.parametrize(("dtype", "suffix"), [(torch.float32, "f32"), (torch.float64, "f64")])
def test_auto_runs_the_kernel_both_ways_on_contiguous_float_cpu_tensors(
    spy: _Spy, dtype: torch.dtype, suffix: str
) -> None:
    x, score = _inputs(dtype)
    pooled = local_attention_pool2d(x, score, 2, alpha=1.3)
    pooled.square().sum().backward()
    assert spy.asked == [f"lap_forward_{suffix}", f"lap_backward_{suffix}"]
    spy.asked.clear()
    adaptive_local_attention_pool2d(x, score, 1, 1.3).square().sum().backward()
    assert spy.asked == [f"lap_global_forward_{suffix}", f"lap_global_backward_{suffix}"]
    want = _window_loop(x.detach(), score.detach(), 2, 2, 1.3).to(dtype)
    torch.testing.assert_close(pooled.detach(), want)


@needs_kernel
def test_a_double_backward_leaves_the_kernel_for_differentiable_operations(spy: _Spy) -> None:
    """The kernel's backward is not differentiable: with ``create_graph`` the first backward
    must be PyTorch's own operations (the forward still runs the kernel)."""
    x, score = _inputs(torch.float64)
    pooled = local_attention_pool2d(x, score, 2, alpha=1.3)
    (grad_x,) = torch.autograd.grad(pooled.square().sum(), x, create_graph=True)
    assert spy.asked == ["lap_forward_f64"]
    (grad_score,) = torch.autograd.grad(grad_x.square().sum(), score)
    assert torch.isfinite(grad_score).all() and grad_score.abs().sum() > 0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: t.half(), id="float16"),
        pytest.param(lambda t: t.bfloat16(), id="bfloat16"),
        pytest.param(lambda t: t.float().contiguous(memory_format=torch.channels_last), id="nhwc"),
        pytest.param(lambda t: t.float().transpose(2, 3).contiguous().transpose(2, 3), id="view"),
    ],
)
def test_auto_keeps_tensors_the_kernel_cannot_read_on_the_torch_path(spy: _Spy, make) -> None:
    x, score = _inputs(torch.float64)
    x16 = make(x.detach())
    pooled = local_attention_pool2d(x16, score.detach().float(), 2, alpha=1.3)
    global_pool = adaptive_local_attention_pool2d(x16, score.detach().float(), 1, 1.3)
    assert spy.asked == []
    assert pooled.dtype == x16.dtype
    loose = {"atol": 2e-2, "rtol": 2e-2} if x16.dtype != torch.float32 else {}
    want = _window_loop(x16.double(), score.detach(), 2, 2, 1.3)
    torch.testing.assert_close(pooled.double(), want, **loose)
    want_global = _window_loop(x16.double(), score.detach(), (6, 4), 1, 1.3)
    torch.testing.assert_close(global_pool.double(), want_global, **loose)


def test_backend_kernel_refuses_tensors_the_kernel_cannot_read() -> None:
    x, score = _inputs(torch.float64)
    with pytest.raises(RuntimeError, match=r"backend='kernel' needs .* got torch.float16"):
        local_attention_pool2d(x.detach().half(), score.detach(), 2, backend="kernel")


@needs_kernel
@pytest.mark.parametrize(
    "predicate",
    [
        (torch.jit, "is_tracing"),
        (torch.compiler, "is_compiling"),
        (torch.compiler, "is_exporting"),
    ],
    ids=["trace", "compile", "export"],
)
def test_tracing_compiling_or_exporting_never_runs_the_kernel(
    spy: _Spy, monkeypatch: pytest.MonkeyPatch, predicate
) -> None:
    """A traced or exported graph must hold PyTorch's own operations: a ctypes call is
    invisible to it (``torchlap export``)."""
    monkeypatch.setattr(*predicate, lambda: True)
    x, score = _inputs(torch.float32)
    pooled = local_attention_pool2d(x.detach(), score.detach(), 2, alpha=1.3)
    assert spy.asked == []
    want = _window_loop(x.detach(), score.detach(), 2, 2, 1.3).float()
    torch.testing.assert_close(pooled, want)


def test_torch_path_gives_the_input_gradient_when_only_x_requires_it() -> None:
    """Pure-PyTorch backward with a detached score map: only ``grad_x`` is asked for."""
    x, score = _inputs(torch.float64)
    pooled = local_attention_pool2d(x, score.detach(), 3, 1, alpha=1.3, backend="torch")
    probe = torch.linspace(-1, 1, pooled.numel(), dtype=torch.float64).reshape(pooled.shape)
    (grad_x,) = torch.autograd.grad((pooled * probe).sum(), x)
    # Eq. 1 is linear in x: d out[b, c, i, j] / d x[b, c, r, q] = N(V)_rq / sum N(V)
    want = torch.zeros_like(x)
    s = score.detach()
    for b in range(x.shape[0]):
        for i in range(pooled.shape[2]):
            for j in range(pooled.shape[3]):
                pixels = [(i + r, j + q) for r in range(3) for q in range(3)]
                v = [float(s[b, 0, r, q]) for r, q in pixels]
                w = [torch.exp(torch.tensor(-(1.3**2) * (max(v) - e) ** 2)) * e + EPS for e in v]
                for (r, q), wk in zip(pixels, w, strict=True):
                    want[b, :, r, q] += probe[b, :, i, j] * wk / sum(w)
    torch.testing.assert_close(grad_x, want)


def _adaptive_loop(x, score, out_h, out_w, alpha):
    """Adaptive windows (``nn.AdaptiveAvgPool2d``'s: rows floor(i H / n) to ceil((i + 1) H / n))
    pooled by Eq. 1 and 4, one window and pixel at a time."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, channels, out_h, out_w, dtype=torch.float64)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                r0, r1 = (i * height) // out_h, -((-(i + 1) * height) // out_h)
                q0, q1 = (j * width) // out_w, -((-(j + 1) * width) // out_w)
                pixels = [(r, q) for r in range(r0, r1) for q in range(q0, q1)]
                v = [score[b, 0, r, q] for r, q in pixels]
                peak = torch.stack(v).max()  # max V is part of Eq. 4: its gradient too
                w = [torch.exp(-(alpha**2) * (peak - e) ** 2) * e + EPS for e in v]
                total = sum(w)
                for c in range(channels):
                    out[b, c, i, j] = (
                        sum(wk * x[b, c, r, q] for wk, (r, q) in zip(w, pixels, strict=True))
                        / total
                    )
    return out


@pytest.mark.parametrize(
    ("output_size", "backend"), [((4, 3), "auto"), ((1, 1), "torch"), ((1, 1), "auto")]
)
def test_adaptive_input_gradient_when_only_x_requires_it(output_size, backend) -> None:
    """The adaptive pool's matrix-product backward with a detached score map: ``grad_x`` only
    (its weights need no gradient), against autograd through the loop reference."""
    x, score = _inputs(torch.float64, seed=3)
    pooled = adaptive_local_attention_pool2d(x, score.detach(), output_size, 1.3, backend=backend)
    probe = torch.linspace(-1, 1, pooled.numel(), dtype=torch.float64).reshape(pooled.shape)
    (grad_x,) = torch.autograd.grad((pooled * probe).sum(), x)
    leaf = x.detach().requires_grad_()
    want = _adaptive_loop(leaf, score.detach(), *output_size, 1.3)
    (want_grad,) = torch.autograd.grad((want * probe).sum(), leaf)
    torch.testing.assert_close(pooled.detach(), want.detach())
    torch.testing.assert_close(grad_x, want_grad)


def test_ceil_mode_defaults_to_false_as_in_max_pool() -> None:
    """``local_attention_pool2d``'s default: floor mode, like ``nn.MaxPool2d`` (a 5x5 map in
    2x2 windows gives 2x2 outputs, the last row and column in no window)."""
    x, score = torch.rand(1, 2, 5, 5, dtype=torch.float64), torch.rand(1, 1, 5, 5)
    pooled = local_attention_pool2d(x, score.double(), 2)
    assert pooled.shape == (1, 2, 2, 2)
    torch.testing.assert_close(pooled, _window_loop(x, score.double(), 2, 2, 1.0))


@needs_kernel
def test_kernel_weight_gradient_of_a_1x1_kernel_split_over_tasks() -> None:
    """The window sum's weight gradient from the kernel, one weight per window (a 1x1 kernel,
    stride 2), batch 1 and 2 threads: its channel sum is split over 2 tasks whose partial sums
    must all be added: ``d out[b, c, i, j] / d w[b, 0, i, j] = x[b, c, 2i, 2j]``."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(1, 5, 6, 4, generator=generator, dtype=torch.float64)
    weights = torch.rand(1, 1, 3, 2, generator=generator, dtype=torch.float64)
    weights.requires_grad_()
    probe = torch.randn(1, 5, 3, 2, generator=generator, dtype=torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = functional._WeightedWindowSum.apply(x, weights, (1, 1), (2, 2), (0, 0), "kernel")
        (grad,) = torch.autograd.grad((out * probe).sum(), weights)
    finally:
        torch.set_num_threads(previous)
    want = torch.zeros_like(grad)
    for i in range(3):
        for j in range(2):
            want[0, 0, i, j] = sum(probe[0, c, i, j] * x[0, c, 2 * i, 2 * j] for c in range(5))
    torch.testing.assert_close(grad, want)


@pytest.mark.parametrize(
    ("output_size", "backend"), [((4, 3), "auto"), ((2, 4), "torch"), ((1, 1), "torch")]
)
def test_adaptive_gradients_of_x_score_and_alpha_match_the_loop(output_size, backend) -> None:
    """The matrix-product backward of the adaptive pool gives the weights' gradient too (to
    the score map and ``alpha`` through Eq. 4)."""
    x, score = _inputs(torch.float64, seed=4)
    alpha = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    pooled = adaptive_local_attention_pool2d(x, score, output_size, alpha, backend=backend)
    probe = torch.linspace(-1, 1, pooled.numel(), dtype=torch.float64).reshape(pooled.shape)
    grads = torch.autograd.grad((pooled * probe).sum(), (x, score, alpha))
    leaves = [t.detach().requires_grad_() for t in (x, score, alpha)]
    want = _adaptive_loop(*leaves[:2], *output_size, leaves[2])
    wants = torch.autograd.grad((want * probe).sum(), leaves)
    for got, expected in zip(grads, wants, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (4, 1)])
def test_adaptive_pool_accepts_maps_of_one_row_or_column(size) -> None:
    """The functional adaptive pool takes any map of at least 1x1 pixels (an empty one is
    refused): one row or one column is a map, and its global pool is Eq. 1 over it."""
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    score = torch.rand(2, 1, *size, dtype=torch.float64)
    got = adaptive_local_attention_pool2d(x, score, 1, 1.3)
    torch.testing.assert_close(got, _adaptive_loop(x, score, 1, 1, 1.3))
    with pytest.raises(ValueError, match="at least 1x1 pixels"):
        adaptive_local_attention_pool2d(x[:, :, :0], score[:, :, :0], 1)


def test_adaptive_pool_defaults_to_alpha_one() -> None:
    """``alpha`` defaults to 1 in the adaptive pool as in the windowed one (the module's
    initial value)."""
    x, score = _inputs(torch.float64, seed=6)
    x, score = x.detach(), score.detach()
    torch.testing.assert_close(
        adaptive_local_attention_pool2d(x, score, (2, 2)), _adaptive_loop(x, score, 2, 2, 1.0)
    )
    torch.testing.assert_close(
        adaptive_local_attention_pool2d(x, score, 1), _adaptive_loop(x, score, 1, 1, 1.0)
    )
