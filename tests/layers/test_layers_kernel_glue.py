"""The Python glue around the compiled kernels: the thread count each call is given (PyTorch's,
``torch.set_num_threads``) and the message of ``backend='kernel'`` when the kernel cannot run.
"""

import pytest
import torch

import torchlap._ext as ext
from torchlap._ext import lap_kernels
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d
from torchlap.layers.lap import LocalAttentionPool2d

needs_kernel = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")

# each kernel function and the position of its thread-count argument
THREADS_ARG = {
    "lap_forward_f64": 4,
    "lap_backward_f64": 7,
    "lap_global_forward_f64": 6,
    "lap_global_backward_f64": 9,
    "lap_layer_forward_f64": 14,
    "lap_layer_backward_f64": 17,
}


class _Recorder:
    """The real library, recording the thread count each kernel function is called with."""

    def __init__(self, real):
        self.real, self.threads = real, {}

    def __getattr__(self, name):
        function = getattr(self.real, name)
        if name not in THREADS_ARG:
            return function

        def call(*args):
            self.threads.setdefault(name, []).append(args[THREADS_ARG[name]])
            return function(*args)

        return call


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_kernel_call_runs_on_pytorchs_thread_count(threads, monkeypatch):
    recorder = _Recorder(lap_kernels())
    monkeypatch.setitem(ext._state, "library", recorder)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
        score = torch.rand(2, 1, 6, 6, dtype=torch.float64)
        local_attention_pool2d(x, score, 2, backend="kernel").sum().backward()
        adaptive_local_attention_pool2d(x, score, 1).sum().backward()
        LocalAttentionPool2d(3, 2, dtype=torch.float64)(x).sum().backward()
    finally:
        torch.set_num_threads(previous)
    assert recorder.threads == {name: [threads] for name in THREADS_ARG}


@needs_kernel
def test_backend_kernel_on_a_half_tensor_says_the_kernel_is_available():
    x, score = torch.randn(1, 2, 4, 4).half(), torch.rand(1, 1, 4, 4)
    with pytest.raises(
        RuntimeError, match=r"float16 on cpu \(contiguous: True\), kernel available"
    ):
        local_attention_pool2d(x, score, 2, backend="kernel")


def test_backend_kernel_without_the_kernel_says_it_is_not_available(monkeypatch):
    monkeypatch.setitem(ext._state, "library", None)
    x, score = torch.randn(1, 2, 4, 4), torch.rand(1, 1, 4, 4)
    with pytest.raises(RuntimeError, match=r"float32 on cpu .*, kernel not available"):
        local_attention_pool2d(x, score, 2, backend="kernel")


def _window_loop(x, score, k, alpha, eps):
    """Eq. 1 with Eq. 4 over non-overlapping k x k windows, one window at a time (paper 000)."""
    batch, channels, height, width = x.shape
    rows = []
    for b in range(batch):
        out = []
        for i in range(height // k):
            for j in range(width // k):
                v = score[b, 0, i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(-1)
                weight = torch.exp(-((alpha * (v.max() - v)) ** 2)) * v + eps
                window = x[b, :, i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(channels, -1)
                out.append((window * weight).sum(1) / weight.sum())
        rows.append(torch.stack(out, dim=1).reshape(channels, height // k, width // k))
    return torch.stack(rows)


@needs_kernel
@pytest.mark.parametrize("needs", ["x", "score"])
def test_the_kernel_backward_of_one_input_alone(needs):
    """Only ``x`` or only the score map needs a gradient: the kernel's backward writes that one,
    equal to the window loop's."""
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64, generator=generator)
    score = torch.rand(2, 1, 6, 8, dtype=torch.float64, generator=generator)
    probe = torch.randn(2, 3, 3, 4, dtype=torch.float64, generator=generator)

    def gradient(pool):
        inputs = [x.clone().requires_grad_(needs == "x"), score.clone()]
        inputs[1].requires_grad_(needs == "score")
        (grad,) = torch.autograd.grad((pool(*inputs) * probe).sum(), inputs[needs == "score"])
        return grad

    got = gradient(lambda a, s: local_attention_pool2d(a, s, 2, alpha=1.3, backend="kernel"))
    want = gradient(lambda a, s: _window_loop(a, s, 2, 1.3, 1e-6))
    torch.testing.assert_close(got, want)
