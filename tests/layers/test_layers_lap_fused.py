"""The fused CPU LAP layer (scorer + Eq. 4 + Eq. 1 in one compiled call each way) against slow
references written from paper 000: the scorer of Eq. 3 one pixel at a time (below) and the
window loops of Eq. 1 and 4 of test_layers_lap_reference.py. Values and gradients of all three
outputs (pooled features, concept maps, score map) with respect to the input and every parameter.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_layers_lap_kernel import _tiny_geometries
from test_layers_lap_reference import reference_adaptive, reference_lap
from torch import nn

import torchlap._ext as ext
from torchlap._ext import kernel_library, lap_kernels
from torchlap.layers import fused
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d

pytestmark = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")

EPS = 1e-3


def reference_scorer(x, w1, b1, w2, b2, aggregation, aggregate=None):
    """Eq. 3 pixel by pixel: 1x1 heads (ReLU between two of them), sigmoid, aggregation.

    ``aggregate``: the "conv" aggregation's weights (n,) and bias (), the paper's ImageNet
    model's 1x1 convolution over the concept probabilities, followed by a sigmoid."""
    batch, _, height, width = x.shape
    concept_rows = []
    for b in range(batch):
        pixels = []
        for r in range(height):
            for q in range(width):
                feature = x[b, :, r, q]
                logits = w1 @ feature + b1
                if w2 is not None:
                    logits = w2 @ torch.relu(logits) + b2
                pixels.append(torch.sigmoid(logits))
        concept_rows.append(torch.stack(pixels, dim=1).reshape(-1, height, width))
    concepts = torch.stack(concept_rows)
    if concepts.shape[1] == 1:
        return concepts, concepts
    if aggregation == "conv":
        weights, bias = aggregate
        rows = []
        for b in range(batch):
            plane = torch.empty(height, width, dtype=x.dtype)
            for r in range(height):
                for q in range(width):
                    plane[r, q] = torch.sigmoid(weights @ concepts[b, :, r, q] + bias)
            rows.append(plane)
        score = torch.stack(rows)[:, None]
    elif aggregation == "max":
        score = concepts.max(dim=1, keepdim=True).values
    elif aggregation == "sum":
        score = concepts.sum(dim=1, keepdim=True)
    else:
        score = concepts.sum(dim=1, keepdim=True) / concepts.shape[1]
    return concepts, score


def make_layer(geometry, channels, n_concepts, hidden, aggregation, dtype):
    torch.manual_seed(11)
    if geometry is None:
        layer = AdaptiveLocalAttentionPool2d(
            channels, 1, n_concepts, hidden, aggregation, alpha=1.4, eps=EPS, dtype=dtype
        )
    else:
        kernel, stride, padding, ceil_mode = geometry
        layer = LocalAttentionPool2d(
            channels, kernel, stride, padding, n_concepts, hidden, aggregation,
            alpha=1.4, eps=EPS, ceil_mode=ceil_mode, dtype=dtype,
        )  # fmt: skip
    with torch.no_grad():  # away from the zero start, so that the scores differ per pixel
        for parameter in layer.scorer.parameters():
            parameter.add_(torch.randn_like(parameter))
    return layer


def scorer_parameters(layer):
    convs = [m for m in layer.scorer.heads if isinstance(m, nn.Conv2d)]
    w1, b1 = convs[0].weight[:, :, 0, 0], convs[0].bias
    if len(convs) == 1:
        return w1, b1, None, None
    return w1, b1, convs[1].weight[:, :, 0, 0], convs[1].bias


def reference_layer(layer, x, geometry, aggregation):
    aggregate = None
    if aggregation == "conv" and layer.n_concepts > 1:
        conv = layer.scorer.aggregate[0]
        aggregate = (conv.weight.reshape(-1), conv.bias[0])
    concepts, score = reference_scorer(x, *scorer_parameters(layer), aggregation, aggregate)
    if geometry is None:
        pooled = reference_adaptive(x, score, (1, 1), layer.alpha, EPS)
    else:
        kernel, stride, padding, ceil_mode = geometry
        kernel, stride, padding = ((v, v) if isinstance(v, int) else v for v in geometry[:3])
        pooled = reference_lap(x, score, kernel, stride, padding, layer.alpha, EPS, ceil_mode)
    return pooled, concepts, score


def outputs_and_gradients(layer, x, forward):
    """Outputs and the gradients of a random probe of all three outputs (x and parameters)."""
    x = x.clone().requires_grad_(True)
    pooled, concepts, score = forward(x)
    generator = torch.Generator().manual_seed(5)
    loss = sum(
        (t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
        for t in (pooled, concepts, score)
    )
    params = [x, *layer.parameters()]
    return [pooled, concepts, score, *torch.autograd.grad(loss, params)]


def fused_forward(layer):
    def forward(x):
        calls = sum(fused.fused_layer_calls.values())
        pooled = layer(x)
        assert sum(fused.fused_layer_calls.values()) == calls + 1, "fused path not taken"
        return pooled, layer.maps.concepts, layer.maps.score

    return forward


GEOMETRIES = [
    # (input height, width, geometry (None: the global pool), batch)
    (5, 7, None, 3),
    (7, 7, None, 1),
    (2, 3, None, 2),  # the global pool of fewer pixels than a vector
    (9, 9, (3, 2, 1, False), 2),  # the ResNet stem's k3 s2 p1 on a small map
    (8, 11, (2, 2, 1, True), 1),  # padding and ceil mode
    (10, 10, (3, 2, 0, True), 3),
    (4, 40, (2, 2, 0, False), 2),  # 20 output columns
    (3, 36, ((3, 3), (1, 2), (1, 1), True), 1),  # overlapping windows, row stride 1
    (7, 10, ((3, 3), (3, 1), (1, 1), False), 2),  # column stride 1, row stride 3
    (9, 11, (2, 2, 0, False), 2),  # the last row and column are in no window
]
SCORERS = [
    # (n_concepts, hidden_channels, aggregation)
    (1, 0, "max"),
    (1, 8, "max"),  # lapify's default: one full group of 8, read from the weight rows directly
    (1, 4, "conv"),  # "conv" with one concept is the concept itself
    (3, 4, "max"),
    (3, 0, "sum"),
    (2, 12, "mean"),  # more than 8 hidden channels: two groups of the convolution kernel
    (3, 0, "conv"),  # the paper's ImageNet scorer: one 1x1 convolution, "conv" aggregation
    (2, 4, "conv"),
]


# the two layouts of the kernel's window sums (TORCHLAP_LAP_WINDOWS; unset: by map size)
LAYOUTS = ["phases", "tiles"]


@pytest.fixture(params=LAYOUTS)
def layout(request, monkeypatch):
    """Each test with this fixture runs once with the phase planes and once with the channel
    tiles of the windowed sums (the global pool has neither)."""
    monkeypatch.setenv("TORCHLAP_LAP_WINDOWS", request.param)
    return request.param


def _other_width() -> int:
    """The vector width (bytes) that this machine's default build does not use."""
    return 32 if lap_kernels().lap_vector_bytes() == 64 else 64


@pytest.fixture(params=["default", "other"], ids=["default vectors", "other vectors"])
def width(request, monkeypatch):
    """Each test with this fixture runs with the kernels the layers use here and with a build of
    the other vector width (-DLAP_VBYTES: 64 bytes where the compiler targets AVX-512, else 32),
    so that both widths' code (16- and 8-lane float vectors) meets the slow references on any
    machine."""
    if request.param == "other":
        monkeypatch.setitem(ext._state, "library", kernel_library(_other_width()))
    return lap_kernels().lap_vector_bytes()


def test_the_two_widths_are_two_builds():
    default, other = lap_kernels(), kernel_library(_other_width())
    assert {default.lap_vector_bytes(), other.lap_vector_bytes()} == {32, 64}
    assert kernel_library(_other_width()) is other  # built once


def test_an_unknown_vector_width_is_refused(monkeypatch):
    with pytest.raises(ValueError, match=r"one of \(32, 64\) bytes"):
        kernel_library(48)
    monkeypatch.setenv("TORCHLAP_EXT_VECTOR_BYTES", "16")
    with pytest.raises(ValueError, match="TORCHLAP_EXT_VECTOR_BYTES='16': expected one of 32, 64"):
        ext._load()
    # a layer's first call raises it too, before any build (the library not loaded yet)
    monkeypatch.delitem(ext._state, "library")
    with pytest.raises(ValueError, match="TORCHLAP_EXT_VECTOR_BYTES='16'"):
        LocalAttentionPool2d(4, 2)(torch.randn(1, 4, 4, 4))
    assert "library" not in ext._state


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """Each test with this fixture runs with 1 and with 2 threads (at batch 1 the two threads
    share one sample's pixels, channels and planes); the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("case", GEOMETRIES)
def test_fused_layer_matches_the_slow_references(case, scorer, dtype, layout, width):
    height, width, geometry, batch = case
    n_concepts, hidden, aggregation = scorer
    layer = make_layer(geometry, 5, n_concepts, hidden, aggregation, dtype)
    x = torch.randn(batch, 5, height, width, dtype=dtype)
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    want = outputs_and_gradients(
        layer, x, lambda inp: reference_layer(layer, inp, geometry, aggregation)
    )
    tolerance = {} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-5}
    names = ["pooled", "concepts", "score", "grad x", *(n for n, _ in layer.named_parameters())]
    for name, g, w in zip(names, got, want, strict=True):
        torch.testing.assert_close(g, w, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("batch", [1, 3])  # 1 < threads: a team per sample; 3: whole samples
@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False), (2, 2, 0, False)])
# 19 channels: two threads' shares of 9 and 10, each a full channel tile and a partial one
@pytest.mark.parametrize("channels", [6, 19])
def test_fused_layer_with_two_threads_matches_one(batch, geometry, channels, layout, width):
    layer = make_layer(geometry, channels, 3, 4, "max", torch.float64)
    x = torch.randn(batch, channels, 9, 34, dtype=torch.float64)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(outputs_and_gradients(layer, x, fused_forward(layer)))
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(*results, strict=True):
        torch.testing.assert_close(one, two)


def assert_fused_matches_reference(layer, x, geometry):
    """The fused layer's outputs and gradients equal the slow references' (max aggregation),
    to assert_close's float64 defaults, and to float32 rounding otherwise."""
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    want = outputs_and_gradients(layer, x, lambda inp: reference_layer(layer, inp, geometry, "max"))
    tolerance = {} if x.dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-5}
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("geometry", _tiny_geometries(40, seed=3))
def test_fused_layer_on_tiny_maps_matches_the_slow_references(
    geometry, dtype, layout, threads, width
):
    """Random maps of 1-7 pixels with 11 channels (a full channel tile and a partial one):
    padding, ceil mode, pixels in no window, kernels below the stride."""
    height, width, kernel, stride, padding, ceil_mode = geometry
    window = (kernel, stride, padding, ceil_mode)
    layer = make_layer(window, 11, 3, 4, "max", dtype)
    # 2 threads take a sample together at batch 1 (each its share of the pixels and channels)
    x = torch.randn(1 if threads == 2 else 2, 11, height, width, dtype=dtype)
    assert_fused_matches_reference(layer, x, window)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 3])  # 1: the two threads share the channels
# 4 pixels: below a float32 vector, one float64 vector of 32 bytes; 16 and 64: whole vectors
# only; 15 and 24: below one 64-byte float32 vector, and one and a half; 25 and 49: the 5x5 and
# 7x7 global pools, whose rows end in an overlapping vector; 81 and 130: more than one block of
# pixels
@pytest.mark.parametrize(
    "size", [(2, 2), (4, 4), (3, 5), (4, 6), (5, 5), (7, 7), (8, 8), (9, 9), (10, 13)]
)
def test_the_global_pool_with_many_channels_matches_the_slow_references(
    size, batch, dtype, threads, width
):
    """21 channels: blocks of 8 channels and a remainder in the forward's window sums, and an odd
    number of channels in the backward's weight gradient, also when two threads split them."""
    layer = make_layer(None, 21, 1, 8, "max", dtype)
    x = torch.randn(batch, 21, *size, dtype=dtype)
    assert_fused_matches_reference(layer, x, None)


@pytest.mark.parametrize(
    "geometry",
    # the global pool; windows with padding; a kernel below the stride (pixels in no window)
    [None, (2, 2, 0, False), (3, 2, 1, True), ((1, 1), (2, 2), (0, 0), False)],
)
def test_fused_backward_writes_every_input_gradient_element(geometry, layout, width, monkeypatch):
    """The kernel's grad_x buffer comes from torch.empty_like; filled with NaN here, any element
    the backward leaves unwritten (or reads before writing) shows."""
    layer = make_layer(geometry, 10, 2, 4, "max", torch.float64)
    x = torch.randn(3, 10, 9, 11, dtype=torch.float64)
    want = outputs_and_gradients(layer, x, lambda inp: reference_layer(layer, inp, geometry, "max"))
    real = torch.empty_like
    monkeypatch.setattr(
        fused.torch, "empty_like", lambda t, **kw: real(t, **kw).fill_(float("nan"))
    )
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    monkeypatch.setattr(fused.torch, "empty_like", real)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_an_unknown_window_layout_is_refused(monkeypatch):
    monkeypatch.setenv("TORCHLAP_LAP_WINDOWS", "rows")
    layer = make_layer((2, 2, 0, False), 4, 1, 0, "max", torch.float32)
    with pytest.raises(ValueError, match=r"TORCHLAP_LAP_WINDOWS='rows'.*'phases', 'tiles'"):
        layer(torch.randn(1, 4, 6, 6))


@pytest.mark.parametrize("geometry", [None, ((2, 3), (1, 2), (1, 1), True)])
@pytest.mark.parametrize("hidden", [0, 3])
@pytest.mark.parametrize("aggregation", ["max", "conv"])
def test_fused_layer_gradcheck(geometry, hidden, aggregation):
    layer = make_layer(geometry, 3, 2, hidden, aggregation, torch.float64)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    convs = [m for m in layer.scorer.heads if isinstance(m, nn.Conv2d)]
    if aggregation == "conv":
        convs.append(layer.scorer.aggregate[0])  # the last pair: the aggregation's
    params = [p.detach().clone().requires_grad_(True) for c in convs for p in (c.weight, c.bias)]
    alpha = layer.alpha.detach().clone().requires_grad_(True)
    window = None
    if geometry is not None:
        kernel, stride, padding, ceil_mode = geometry
        window = (kernel, stride, padding, ceil_mode)

    def fn(x, alpha, *params):
        pairs = [(params[i], params[i + 1]) for i in range(0, len(params), 2)]
        aggregate = pairs.pop() if aggregation == "conv" else None
        out = fused.fused_lap_layer(x, pairs, aggregation, alpha, EPS, window, aggregate)
        assert out is not None
        return out

    assert torch.autograd.gradcheck(fn, (x, alpha, *params))


def test_fused_layer_refuses_a_double_backward():
    layer = make_layer(None, 4, 1, 2, "max", torch.float64)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=False)
    assert torch.isfinite(grad).all()
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)


def _hooked_layer():
    layer = LocalAttentionPool2d(4, 2, hidden_channels=3)
    layer.scorer.heads[0].register_forward_hook(lambda *args: None)
    return layer


def _hooked_conv_aggregation():
    layer = LocalAttentionPool2d(4, 2, n_concepts=3, aggregation="conv")
    layer.scorer.aggregate[0].register_forward_hook(lambda *args: None)
    return layer


FALLBACKS = {
    "hook on the conv aggregation": _hooked_conv_aggregation,
    "module aggregation": lambda: LocalAttentionPool2d(
        4, 2, n_concepts=3, aggregation=nn.Sequential(nn.Conv2d(3, 1, 1), nn.Sigmoid())
    ),
    "hook on the scorer": _hooked_layer,
    # scorers above MAX_FUSED_HEADS, where PyTorch's GEMMs are faster
    "65 concepts": lambda: LocalAttentionPool2d(4, 2, n_concepts=65, hidden_channels=0),
    "65 hidden channels": lambda: LocalAttentionPool2d(4, 2, hidden_channels=65),
    "adaptive 2x2": lambda: AdaptiveLocalAttentionPool2d(4, 2),
    "per-head hidden channels": lambda: LocalAttentionPool2d(
        4, 2, n_concepts=3, head_hidden="per_head"
    ),
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_other_layers_take_the_per_op_path(name):
    layer = FALLBACKS[name]()
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    calls = dict(fused.fused_layer_calls)
    out = layer(x)
    out.sum().backward()
    assert fused.fused_layer_calls == calls
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
def test_a_layer_with_a_discriminative_scorer_takes_the_fused_path(geometry, monkeypatch):
    """Weak supervision's discriminative scorer sees the detached input and feeds only the loss,
    so the layer stays fused; its maps and every gradient equal those of the per-op path."""
    layer = make_layer(geometry, 6, 3, 4, "max", torch.float64)
    layer.enable_discriminative_scorer()
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    probe = torch.randn(2, 3, 9, 9, generator=generator, dtype=torch.float64)

    def run():
        inp = x.clone().requires_grad_(True)
        pooled = layer(inp)
        maps = layer.maps
        loss = pooled.square().sum() + (maps.concepts * maps.discriminative * probe).sum()
        grads = torch.autograd.grad(loss, [inp, *layer.parameters()], allow_unused=True)
        return [pooled, maps.concepts, maps.discriminative, *grads]

    calls = sum(fused.fused_layer_calls.values())
    got = run()
    assert sum(fused.fused_layer_calls.values()) == calls + 1
    assert got[2].grad_fn is not None and got[0].grad_fn is not None
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")
    want = run()
    assert sum(fused.fused_layer_calls.values()) == calls + 1
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            torch.testing.assert_close(g, w)


def test_inputs_the_kernel_does_not_take_use_the_per_op_path():
    layer = LocalAttentionPool2d(4, 3, 2, 1, n_concepts=2, hidden_channels=3)
    x = torch.randn(2, 4, 9, 9)
    calls = dict(fused.fused_layer_calls)
    expected = layer(x)  # the fused path, for comparison
    assert fused.fused_layer_calls != calls
    strided = torch.randn(2, 4, 9, 18)[..., ::2]  # neither contiguous nor channels-last
    on_copy = layer(strided.contiguous())  # the fused path
    calls = dict(fused.fused_layer_calls)
    torch.testing.assert_close(layer(strided), on_copy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    traced = torch.jit.trace(layer, x, check_trace=False)
    torch.testing.assert_close(traced(x), expected)
    half = LocalAttentionPool2d(4, 2, dtype=torch.bfloat16)
    half(torch.randn(1, 4, 4, 4, dtype=torch.bfloat16))
    assert fused.fused_layer_calls == calls


def test_channels_last_inputs_take_the_fused_path_with_the_same_values_and_gradients():
    layer = LocalAttentionPool2d(4, 3, 2, 1, n_concepts=2, hidden_channels=3)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    expected = layer(x)
    expected.square().sum().backward()
    expected_grad, x.grad = x.grad, None
    channels_last = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    assert not channels_last.is_contiguous()
    calls = dict(fused.fused_layer_calls)
    out = layer(channels_last)
    assert fused.fused_layer_calls["window"] == calls["window"] + 1
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    torch.testing.assert_close(channels_last.grad, expected_grad)


def test_fused_and_per_op_paths_agree_in_process(monkeypatch):
    layer = make_layer((3, 2, 1, False), 5, 3, 4, "sum", torch.float32)
    x = torch.randn(2, 5, 11, 9)
    fused_results = outputs_and_gradients(layer, x, fused_forward(layer))

    def per_op(inp):
        calls = dict(fused.fused_layer_calls)
        pooled = layer(inp)
        assert fused.fused_layer_calls == calls
        return pooled, layer.maps.concepts, layer.maps.score

    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")
    unfused = outputs_and_gradients(layer, x, per_op)
    for a, b in zip(fused_results, unfused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_without_the_kernel_the_values_are_the_same(tmp_path: Path):
    """``TORCHLAP_NO_EXT=1`` (pure PyTorch, no compiled code) gives the fused layer's values."""
    src = Path(__file__).resolve().parents[2] / "src"
    code = (
        "import sys, torch\n"
        "from torchlap.layers import fused\n"
        "from torchlap.layers.lap import LocalAttentionPool2d, AdaptiveLocalAttentionPool2d\n"
        "torch.manual_seed(3)\n"
        "layers = [LocalAttentionPool2d(5, 3, 2, 1, n_concepts=2, hidden_channels=4),\n"
        "          AdaptiveLocalAttentionPool2d(5, 1, n_concepts=1, hidden_channels=0)]\n"
        "x = torch.randn(2, 5, 9, 9, requires_grad=True)\n"
        "saved = {}\n"
        "for i, layer in enumerate(layers):\n"
        "    for p in layer.parameters():\n"
        "        p.data.add_(torch.randn_like(p))\n"
        "    out = layer(x)\n"
        "    (out.square().sum() + layer.maps.concepts.sum()).backward()\n"
        "    saved[i] = [out.detach(), layer.maps.concepts.detach(), x.grad.clone()]\n"
        "    saved[i] += [p.grad.clone() for p in layer.parameters()]\n"
        "    x.grad = None\n"
        "saved['fused'] = sum(fused.fused_layer_calls.values())\n"
        "torch.save(saved, sys.argv[1])\n"
    )
    results = {}
    for name, value in (("kernel", "0"), ("no_ext", "1")):
        env = dict(os.environ, PYTHONPATH=str(src), TORCHLAP_NO_EXT=value)
        target = tmp_path / f"{name}.pt"
        done = subprocess.run(
            [sys.executable, "-c", code, str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results[name] = torch.load(target)
    assert results["kernel"].pop("fused") == 2
    assert results["no_ext"].pop("fused") == 0
    for i in (0, 1):
        for a, b in zip(results["kernel"][i], results["no_ext"][i], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("used", ["concepts", "score", "pooled"])
@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
@pytest.mark.parametrize("aggregation", ["max", "conv"])
def test_fused_layer_with_gradient_into_one_output_only(used, geometry, aggregation):
    """Expanded (stride 0) upstream gradients, and outputs without a gradient at all: a parameter
    the used output does not depend on gets None, as on the per-op path."""
    layer = make_layer(geometry, 4, 3, 2, aggregation, torch.float64)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    index = ["pooled", "concepts", "score"].index(used)

    def loss_and_grads(forward):
        inp = x.clone().requires_grad_(True)
        loss = forward(inp)[index].sum()  # its gradient is an expanded tensor of ones
        return torch.autograd.grad(loss, [inp, *layer.parameters()], allow_unused=True)

    got = loss_and_grads(fused_forward(layer))
    want = loss_and_grads(lambda inp: reference_layer(layer, inp, geometry, aggregation))
    for g, w in zip(got, want, strict=True):
        if w is None:  # the reference does not reach it (alpha without a pooled gradient)
            assert g is None  # not zeros: an optimizer would decay and move a zero gradient
        else:
            torch.testing.assert_close(g, w)


@pytest.mark.parametrize("frozen", ["input", "first convolution"])
@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
def test_fused_layer_with_an_input_that_needs_no_gradient(frozen, geometry):
    """A frozen first convolution of the scorer (the kernel skips its weight gradient) or an input
    that needs no gradient (the kernel writes no grad_x): the other gradients are unchanged."""
    layer = make_layer(geometry, 11, 1, 12, "max", torch.float64)
    x = torch.randn(2, 11, 7, 7, dtype=torch.float64)
    first = layer.scorer.heads[0].weight
    first.requires_grad_(frozen != "first convolution")

    def grads(forward):
        inp = x.clone().requires_grad_(frozen != "input")
        wanted = [t for t in (inp, *layer.parameters()) if t.requires_grad]
        pooled, concepts, score = forward(inp)
        return torch.autograd.grad((pooled.sum() + concepts.sum() + score.sum()), wanted)

    got = grads(fused_forward(layer))
    want = grads(lambda inp: reference_layer(layer, inp, geometry, "max"))
    assert len(got) == len(want) == len(list(layer.parameters()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_the_kernels_report_their_work_buffers_and_bench_counts_them():
    """The C allocations (tiles, partial sums) are invisible to PyTorch's memory profiler, so the
    kernels count them; ``torchlap bench`` adds the largest call to the profiler's peak."""
    from torchlap._ext import kernel_work_peak
    from torchlap.bench.common import peak_memory_bytes

    layer = make_layer((2, 2, 0, False), 16, 1, 8, "max", torch.float32)
    x = torch.randn(3, 16, 8, 8, requires_grad=True)
    kernel_work_peak(reset=True)
    assert kernel_work_peak() == 0
    layer(x).sum().backward()
    seen = kernel_work_peak(reset=True)
    # at least each of the two threads' (or one thread's) input tile: (P + 1) rows of 8 floats
    assert seen >= (8 * 8 + 1) * 8 * 4
    assert kernel_work_peak() == 0

    def run():
        layer(x).sum().backward()
        x.grad = None

    with_kernels = peak_memory_bytes(run, torch.device("cpu"))
    assert with_kernels >= seen
    assert kernel_work_peak() == 0  # read and reset by the measurement


@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
@pytest.mark.parametrize("hidden", [0, 2])
def test_a_nan_feature_stays_nan_as_on_the_per_op_path(geometry, hidden):
    """The kernel's ReLU between the scorer's heads kept NaN as 0, so a NaN feature gave finite
    concepts and pooled values where torch.relu (the per-op path, the reference) gives NaN."""
    layer = make_layer(geometry, 3, 2, hidden, "max", torch.float64)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    x[0, 0, 1, 1] = float("nan")
    got = fused_forward(layer)(x)
    want = reference_layer(layer, x, geometry, "max")
    for g, w in zip(got, want, strict=True):
        assert w.isnan().any()
        torch.testing.assert_close(g, w, equal_nan=True)
