"""The compiled CPU kernel and the pure-PyTorch path of LAP's pooling against a slow reference.

The reference loops over windows and pixels, straight from paper 000's Eq. 1 and Eq. 4; both
backends of ``local_attention_pool2d`` and of the global pool must give its values and its
gradients (autograd through the reference's plain torch ops).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchlap._ext import lap_kernels
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

needs_kernel = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")


def slow_lap(x, score, kernel, stride, padding, alpha, eps, ceil_mode=False):
    """Eq. 1 with Eq. 4's weights, one window at a time; padded pixels are not in the window."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    batch, _, height, width = x.shape

    def out_len(size, k, s, p):
        span = size + 2 * p - k
        n = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        return n

    out_h, out_w = out_len(height, kh, sh, ph), out_len(width, kw, sw, pw)
    rows = []
    for b in range(batch):
        plane = []
        for i in range(out_h):
            line = []
            for j in range(out_w):
                pixels = [
                    (i * sh - ph + a, j * sw - pw + c)
                    for a in range(kh)
                    for c in range(kw)
                    if 0 <= i * sh - ph + a < height and 0 <= j * sw - pw + c < width
                ]
                v = torch.stack([score[b, 0, r, q] for r, q in pixels])
                weights = torch.exp(-(alpha**2) * (v.max() - v) ** 2) * v + eps
                feats = torch.stack([x[b, :, r, q] for r, q in pixels], dim=1)
                line.append((feats * weights).sum(1) / weights.sum())
            plane.append(torch.stack(line, dim=1))
        rows.append(torch.stack(plane, dim=1))
    return torch.stack(rows)


def _tiny_geometries(count: int, seed: int = 0) -> list[tuple]:
    """Random small maps, kernels, strides, paddings and ceil modes (PyTorch's pooling rules:
    padding at most half the kernel, the padded map at least one kernel)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    found = []
    while len(found) < count:
        kernel = (draw(1, 4), draw(1, 4))
        stride = (draw(1, 3), draw(1, 3))
        padding = (draw(0, kernel[0] // 2), draw(0, kernel[1] // 2))
        size = (draw(1, 7), draw(1, 7))
        if any(n + 2 * p < k for n, k, p in zip(size, kernel, padding, strict=True)):
            continue
        found.append((*size, kernel, stride, padding, bool(draw(0, 1))))
    return found


GEOMETRIES = [
    # (height, width, kernel, stride, padding, ceil_mode)
    (8, 8, (2, 2), (2, 2), (0, 0), False),
    (9, 7, (3, 3), (2, 2), (1, 1), False),
    (9, 9, (3, 3), (2, 2), (0, 0), False),
    (7, 9, (3, 3), (2, 2), (1, 1), True),
    (7, 7, (2, 2), (2, 2), (0, 0), True),
    (6, 8, (3, 2), (1, 3), (1, 0), False),
    (10, 11, (4, 5), (3, 2), (2, 2), True),
    (9, 10, (3, 3), (1, 1), (1, 1), False),  # unit stride: the phases are the rows themselves
    (9, 11, (2, 2), (2, 2), (0, 0), False),  # the last row and column are in no window
    (8, 9, (1, 1), (2, 2), (0, 0), False),  # kernel below the stride: pixels between windows
    (3, 70, (1, 66), (1, 2), (0, 0), True),  # a kernel wider than 64 columns
]


@pytest.mark.parametrize("backend", ["torch", pytest.param("kernel", marks=needs_kernel)])
# and maps of 1-7 pixels, where the kernel's phase planes are mostly edges (padding, pixels in
# no window, column phases without a pixel)
@pytest.mark.parametrize("geometry", GEOMETRIES + _tiny_geometries(40))
def test_both_backends_match_the_slow_reference_and_its_gradients(backend, geometry):
    height, width, kernel, stride, padding, ceil_mode = geometry
    x = torch.randn(3, 4, height, width, dtype=torch.float64, requires_grad=True)
    score = torch.rand(3, 1, height, width, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    got = local_attention_pool2d(
        x, score, kernel, stride, padding, alpha, 1e-3, ceil_mode, backend=backend
    )
    want = slow_lap(x, score, kernel, stride, padding, alpha, 1e-3, ceil_mode)
    torch.testing.assert_close(got, want)
    probe = torch.randn_like(want)
    grads = torch.autograd.grad((got * probe).sum(), (x, score, alpha))
    wants = torch.autograd.grad((want * probe).sum(), (x, score, alpha))
    for g, w in zip(grads, wants, strict=True):
        torch.testing.assert_close(g, w)


@needs_kernel
@pytest.mark.parametrize(
    "geometry",
    [
        (9, 11, (2, 2), (2, 2), (0, 0), False),  # the last row and column are in no window
        (8, 9, (1, 1), (2, 2), (0, 0), False),  # pixels between the windows
        (7, 9, (3, 3), (2, 2), (1, 1), True),
    ],
)
def test_kernel_backward_writes_every_input_gradient_element(geometry):
    """grad_x comes from torch.empty_like: the kernel must write each element, the pixels that
    no window reads with 0 (a buffer full of NaN shows any it leaves)."""
    from torchlap.layers.functional import _geometry, _typed

    height, width, kernel, stride, padding, ceil_mode = geometry
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    # the output grid of PyTorch's pooling rules (LAP's too)
    out_h, out_w = torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode).shape[-2:]
    weights = torch.rand(2, kernel[0] * kernel[1], out_h, out_w, dtype=torch.float64)
    probe = torch.randn(2, 3, out_h, out_w, dtype=torch.float64)
    # d/dx of sum(probe * out), out[o] = sum_k weights[k, o] x[window(o, k)], window by window
    reference = torch.zeros_like(x)
    for k in range(kernel[0] * kernel[1]):
        a, q = divmod(k, kernel[1])
        for i in range(out_h):
            for j in range(out_w):
                r, c = i * stride[0] - padding[0] + a, j * stride[1] - padding[1] + q
                if 0 <= r < height and 0 <= c < width:
                    reference[:, :, r, c] += weights[:, k, i, j, None] * probe[:, :, i, j]
    grad_x = torch.full_like(x, float("nan"))
    backward = _typed(lap_kernels(), "lap_backward", torch.float64)
    geometry_struct = _geometry(x, weights, kernel, stride, padding)
    backward(
        x.data_ptr(), weights.data_ptr(), probe.data_ptr(), grad_x.data_ptr(), None,
        geometry_struct, 1, 1,
    )  # fmt: skip
    torch.testing.assert_close(grad_x, reference)


@needs_kernel
def test_kernel_float32_with_two_threads_splits_the_channel_sum_correctly():
    """Batch 1 with 2 threads: grad_w's channel sum is split over tasks and summed after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(1, 5, 11, 11, requires_grad=True)
        score = torch.rand(1, 1, 11, 11, requires_grad=True)
        outs = [
            local_attention_pool2d(x, score, 3, 2, 1, 1.0, 1e-6, backend=b)
            for b in ("kernel", "torch")
        ]
        grads = [torch.autograd.grad(o.square().sum(), (x, score)) for o in outs]
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(outs[0], outs[1])
    for g_kernel, g_torch in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(g_kernel, g_torch)


def slow_global(x, score, alpha, eps):
    batch, channels = x.shape[:2]
    out = torch.zeros(batch, channels, 1, 1, dtype=x.dtype)
    for b in range(batch):
        v = score[b, 0].reshape(-1)
        weights = torch.exp(-(alpha**2) * (v.max() - v) ** 2) * v + eps
        for c in range(channels):
            out[b, c, 0, 0] = (x[b, c].reshape(-1) * weights).sum() / weights.sum()
    return out


@pytest.mark.parametrize("backend", ["torch", pytest.param("kernel", marks=needs_kernel)])
def test_global_pool_backends_match_the_slow_reference(backend):
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    score = torch.rand(3, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    got = adaptive_local_attention_pool2d(x, score, 1, 0.8, 1e-3, backend=backend)
    want = slow_global(x, score, 0.8, 1e-3)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got.square().sum(), (x, score))
    wants = torch.autograd.grad(want.square().sum(), (x, score))
    for g, w in zip(grads, wants, strict=True):
        torch.testing.assert_close(g, w)


def test_non_contiguous_and_other_dtypes_take_the_torch_path():
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    score = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(
        local_attention_pool2d(x, score, 2), local_attention_pool2d(x, score, 2, backend="torch")
    )
    with pytest.raises(RuntimeError, match="backend='kernel'"):
        local_attention_pool2d(x, score, 2, backend="kernel")
    with pytest.raises(ValueError, match="unknown backend"):
        local_attention_pool2d(x, score, 2, backend="cuda")


def test_without_a_compiler_lap_falls_back_and_says_so_once(tmp_path: Path):
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(src),
        PATH=str(tmp_path),  # no cc, gcc or clang on it
        CC="",
        TORCHLAP_EXT_DIR=str(tmp_path / "ext"),
    )
    env.pop("TORCHLAP_NO_EXT", None)
    code = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from torchlap.layers.functional import local_attention_pool2d\n"
        "from torchlap._ext import kernel_status\n"
        "x = torch.randn(2, 3, 8, 8, requires_grad=True); s = torch.rand(2, 1, 8, 8)\n"
        "a = local_attention_pool2d(x, s, 2); b = local_attention_pool2d(x, s, 2)\n"
        "a.sum().backward()\n"
        "c = local_attention_pool2d(x, s, 2, backend='torch')\n"
        "assert torch.equal(a, c), (a - c).abs().max()\n"
        "print(kernel_status())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pure PyTorch")
    assert done.stderr.count("CPU LAP kernel is not available") == 1


@needs_kernel
def test_kernels_report_a_failed_allocation_before_computing_anything():
    """A geometry whose work buffers cannot be allocated (more bytes than a size_t holds, so no
    allocator, overcommitting or not, hands them out): the call returns 1 at once and leaves its
    output as it was."""
    from torchlap._ext import LapGeometry

    library = lap_kernels()
    x, w = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    out = torch.full((4,), 7.0, dtype=torch.float64)
    huge = LapGeometry(1, 1, 2**30, 2**30, 2**29, 2**29, 2, 2, 2, 2, 0, 0)
    assert library.lap_forward_f64(x.data_ptr(), w.data_ptr(), out.data_ptr(), huge, 2) == 1
    assert library.lap_backward_f64(
        x.data_ptr(), w.data_ptr(), x.data_ptr(), out.data_ptr(), None, huge, 1, 2
    ) == 1  # fmt: skip
    assert torch.equal(out, torch.full((4,), 7.0, dtype=torch.float64))


@needs_kernel
@pytest.mark.parametrize(
    "which",
    ["lap_layer_forward_f32", "lap_layer_backward_f32", "lap_forward_f32", "lap_backward_f32"],
)
def test_a_failed_kernel_allocation_raises_memory_error(monkeypatch, which):
    """The Python side turns the kernels' status 1 into a MemoryError that says what to do."""
    import torchlap._ext as ext
    from torchlap.layers.lap import LocalAttentionPool2d

    real = lap_kernels()

    class Failing:
        def __getattr__(self, name):
            return (lambda *args: 1) if name == which else getattr(real, name)

    monkeypatch.setitem(ext._state, "library", Failing())
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    if which.startswith("lap_layer"):
        run = lambda: LocalAttentionPool2d(3, 2)(x).sum().backward()  # noqa: E731
    else:
        score = torch.rand(2, 1, 8, 8)
        run = lambda: local_attention_pool2d(x, score, 2, backend="kernel").sum().backward()  # noqa: E731
    with pytest.raises(MemoryError, match="could not allocate the work buffers"):
        run()


def test_declare_refuses_a_library_of_another_abi_version():
    from torchlap._ext import declare

    class Library:
        def lap_abi_version(self):
            return 2

    with pytest.raises(RuntimeError, match=r"ABI version 2, expected \(7,\)"):
        declare(Library())


def test_a_build_killed_midway_leaves_no_temporary_in_the_cache(tmp_path: Path, monkeypatch):
    """Before: the temporary library a killed build left in ``$TORCHLAP_EXT_DIR`` stayed there
    for good (the other folders torchlap writes are cleaned when a command writes there)."""
    import torchlap._ext as ext
    import torchlap.io as io_module

    compiler = ext._compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TORCHLAP_EXT_DIR", str(tmp_path))
    library = ext._build(compiler)
    stale = tmp_path / f".{library.name}.4194000.0123abcd.torchlap-tmp"
    stale.write_bytes(b"\x7fELF half a library")
    monkeypatch.setattr(io_module, "_pid_alive", lambda pid: False)
    assert ext._build(compiler) == library  # cached: not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == [library.name]
