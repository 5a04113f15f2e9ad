"""When the fused CPU LAP layer runs, and how: the tensors it refuses (returning None, the caller's
per-op path), the smallest scorers and maps it takes, the window-sum layout it picks when
``TORCHLAP_LAP_WINDOWS`` is unset, and its per-shape setup cache.

Values are checked against the slow references of paper 000 (Eq. 1-4) in
test_layers_lap_fused.py (the scorer of Eq. 3 pixel by pixel, the window loops of Eq. 1 and 4).
"""

import pytest
import torch
from test_layers_lap_fused import (
    EPS,
    fused_forward,
    make_layer,
    outputs_and_gradients,
    reference_layer,
)

from torchlap._ext import kernel_work_peak, lap_kernels
from torchlap.layers import fused

pytestmark = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")


@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
@pytest.mark.parametrize("n_concepts", [1, 3])
def test_a_scorer_with_one_hidden_unit_matches_the_slow_references(geometry, n_concepts):
    """Two 1x1 convolutions with a single hidden channel between them (the smallest hidden
    layer): Eq. 3 with ``h1 = 1``."""
    layer = make_layer(geometry, 5, n_concepts, 1, "max", torch.float64)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    want = outputs_and_gradients(layer, x, lambda inp: reference_layer(layer, inp, geometry, "max"))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_a_one_element_input_takes_the_fused_path():
    """A (1, 1, 1, 1) map: the global pool of its one pixel is the pixel (Eq. 1 with one weight)."""
    layer = make_layer(None, 1, 1, 0, "max", torch.float64)
    x = torch.randn(1, 1, 1, 1, dtype=torch.float64)
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    want = outputs_and_gradients(layer, x, lambda inp: reference_layer(layer, inp, None, "max"))
    torch.testing.assert_close(got[0], x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("geometry", [None, (2, 2, 0, False)])
def test_an_empty_batch_gives_an_empty_output(geometry):
    layer = make_layer(geometry, 4, 2, 3, "max", torch.float32)
    x = torch.randn(0, 4, 6, 6, requires_grad=True)
    out = layer(x)
    assert out.shape == ((0, 4, 1, 1) if geometry is None else (0, 4, 3, 3))
    out.sum().backward()
    assert x.grad.shape == x.shape


def _call(x, heads, alpha, aggregate=None, aggregation="max"):
    return fused.fused_lap_layer(x, heads, aggregation, alpha, EPS, None, aggregate)


def _tensors(dtype=torch.float32):
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 4, generator=generator, dtype=dtype)
    w1 = torch.randn(2, 3, 1, 1, generator=generator, dtype=dtype)
    b1 = torch.randn(2, generator=generator, dtype=dtype)
    return x, w1, b1, torch.tensor(1.5, dtype=dtype)


def test_matching_tensors_take_the_fused_call():
    """The control for the refusals below: these tensors are taken."""
    x, w1, b1, alpha = _tensors()
    assert _call(x, [(w1, b1)], alpha) is not None
    assert _call(x, [(w1, b1)], alpha.reshape(1, 1)) is not None  # any one-element alpha


def _strided(t):
    """``t`` as a non-contiguous view (every other element of a twice-as-wide tensor)."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    wide[..., ::2] = t
    return wide[..., ::2]


REFUSED = {
    "weight of another dtype": lambda x, w1, b1, a: (x, [(w1.double(), b1)], a),
    "bias of another dtype": lambda x, w1, b1, a: (x, [(w1, b1.double())], a),
    "non-contiguous weight": lambda x, w1, b1, a: (x, [(_strided(w1), b1)], a),
    "weight on the meta device": lambda x, w1, b1, a: (x, [(w1.to("meta"), b1)], a),
    "alpha of another dtype": lambda x, w1, b1, a: (x, [(w1, b1)], a.double()),
    "alpha of two elements": lambda x, w1, b1, a: (x, [(w1, b1)], a.repeat(2)),
    "alpha on the meta device": lambda x, w1, b1, a: (x, [(w1, b1)], a.to("meta")),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_tensors_the_kernel_cannot_read_as_the_inputs_dtype_are_refused(name):
    """The kernel reads every tensor as a contiguous CPU buffer of the input's dtype: anything
    else (which it would misread) returns None, so that the layer runs its PyTorch path."""
    x, w1, b1, alpha = _tensors()
    calls = dict(fused.fused_layer_calls)
    assert _call(*REFUSED[name](x, w1, b1, alpha)) is None
    assert fused.fused_layer_calls == calls


def test_the_conv_aggregations_weights_of_another_dtype_are_refused():
    x, w1, b1, alpha = _tensors()
    weight, bias = torch.randn(1, 2, 1, 1), torch.randn(1)
    assert _call(x, [(w1, b1)], alpha, (weight, bias), "conv") is not None
    assert _call(x, [(w1, b1)], alpha, (weight.double(), bias), "conv") is None


@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
def test_torch_func_grad_of_the_input_only_takes_pytorchs_ops(geometry):
    """Under ``torch.func.grad`` with respect to the input alone, only ``x`` is a functorch
    wrapper (the parameters are plain tensors): the layer still runs PyTorch's ops, and the
    gradient equals autograd's on the fused layer."""
    layer = make_layer(geometry, 4, 2, 3, "max", torch.float64)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    calls = dict(fused.fused_layer_calls)
    got = torch.func.grad(lambda inp: layer(inp).square().sum())(x)
    assert fused.fused_layer_calls == calls
    inp = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(fused_forward(layer)(inp)[0].square().sum(), inp)
    torch.testing.assert_close(got, want)


def _work_peak(size, layout, monkeypatch):
    """The kernels' largest work buffer over a fused forward and backward at batch 1 and one
    thread, with ``TORCHLAP_LAP_WINDOWS=layout`` (None: unset)."""
    if layout is None:
        monkeypatch.delenv("TORCHLAP_LAP_WINDOWS", raising=False)
    else:
        monkeypatch.setenv("TORCHLAP_LAP_WINDOWS", layout)
    layer = make_layer((3, 2, 1, False), 16, 1, 4, "max", torch.float32)
    x = torch.randn(1, 16, size, size, requires_grad=True)
    kernel_work_peak(reset=True)
    fused_forward(layer)(x)[0].sum().backward()
    return kernel_work_peak(reset=True)


@pytest.mark.parametrize(("size", "chosen"), [(8, "tiles"), (70, "phases")])
def test_the_unset_window_layout_is_chosen_by_map_size(size, chosen, monkeypatch):
    """Unset, the kernel takes channel tiles on small maps (up to 1024 pixels; 4096 when every
    thread has whole samples) and phase planes above: the two layouts hold work buffers of
    different sizes, and the unset layout's equal the chosen one's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peaks = {layout: _work_peak(size, layout, monkeypatch) for layout in ("tiles", "phases")}
        unset = _work_peak(size, None, monkeypatch)
    finally:
        torch.set_num_threads(previous)
    assert peaks["tiles"] != peaks["phases"]
    assert unset == peaks[chosen]


def test_the_setup_of_each_shape_is_built_once_and_the_cache_stays_bounded(monkeypatch):
    """A network's few shapes each build their kernel geometry once, taking turns; a stream of
    ever new shapes (e.g. varying batch sizes) does not grow the cache without bound."""
    monkeypatch.setattr(fused, "_layer_setups", {})
    built = []
    real = fused._layer_setup

    def counting(*args):
        built.append(args[0])
        return real(*args)

    monkeypatch.setattr(fused, "_layer_setup", counting)
    x, w1, b1, alpha = _tensors()
    other = x[:1].clone()
    for _ in range(3):
        for inp in (x, other):
            assert _call(inp, [(w1, b1)], alpha) is not None
    assert built == [x.shape, other.shape]
    for batch in range(1, 601):
        _call(torch.randn(batch, 3, 1, 1), [(w1, b1)], alpha)
    assert len(fused._layer_setups) <= 300


FROZEN = [
    "alpha",
    "scorer.heads.0.weight",
    "scorer.heads.0.bias",
    "scorer.heads.2.weight",
    "scorer.heads.2.bias",
    "scorer.aggregate.0.weight",
    "scorer.aggregate.0.bias",
]


@pytest.mark.parametrize("geometry", [None, (3, 2, 1, False)])
@pytest.mark.parametrize("frozen", FROZEN)
def test_one_frozen_parameter_leaves_every_other_gradient_unchanged(geometry, frozen):
    """Each parameter in turn needs no gradient (two 1x1 convolutions, the "conv" aggregation):
    the fused backward returns a gradient for every other one, equal to the references'."""
    layer = make_layer(geometry, 6, 2, 4, "conv", torch.float64)
    dict(layer.named_parameters())[frozen].requires_grad_(False)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)

    def grads(forward):
        inp = x.clone().requires_grad_(True)
        wanted = [inp, *(p for p in layer.parameters() if p.requires_grad)]
        pooled, concepts, score = forward(inp)
        return torch.autograd.grad(pooled.sum() + concepts.sum() + score.sum(), wanted)

    got = grads(fused_forward(layer))
    want = grads(lambda inp: reference_layer(layer, inp, geometry, "conv"))
    assert len(got) == len(FROZEN)  # x and the six parameters that need a gradient
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize(("n_concepts", "hidden"), [(1, 64), (64, 0), (64, 5)])
def test_scorers_of_up_to_64_channels_take_the_fused_path(n_concepts, hidden):
    """``MAX_FUSED_HEADS`` (64) first-convolution outputs and concepts are still fused."""
    layer = make_layer((2, 2, 0, False), 3, n_concepts, hidden, "max", torch.float64)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    got = outputs_and_gradients(layer, x, fused_forward(layer))
    want = outputs_and_gradients(
        layer, x, lambda inp: reference_layer(layer, inp, (2, 2, 0, False), "max")
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_65_concepts_after_a_small_hidden_layer_take_the_per_op_path():
    """The concept count is checked on the last convolution's outputs, whatever the hidden
    layer's size (here 4, below the limit)."""
    layer = make_layer((2, 2, 0, False), 3, 65, 4, "max", torch.float32)
    calls = dict(fused.fused_layer_calls)
    layer(torch.randn(2, 3, 4, 4)).sum().backward()
    assert fused.fused_layer_calls == calls


def test_the_conv_aggregation_of_several_concepts_without_its_weights_is_refused():
    x, w1, b1, alpha = _tensors()  # two concepts
    with pytest.raises(ValueError, match='"conv" aggregation of several concepts needs its weigh'):
        _call(x, [(w1, b1)], alpha, None, "conv")
    # one concept is its own score: "conv" needs no weights there
    assert _call(x, [(w1[:1], b1[:1])], alpha, None, "conv") is not None


class _Subclass(torch.Tensor):
    """A plain Python tensor subclass (as wrappers and fake tensors are)."""


def test_a_tensor_subclass_takes_the_per_op_path_and_a_parameter_the_fused_one():
    layer = make_layer((2, 2, 0, False), 3, 2, 4, "max", torch.float64)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    want = reference_layer(layer, x, (2, 2, 0, False), "max")[0]
    calls = dict(fused.fused_layer_calls)
    torch.testing.assert_close(layer(x.as_subclass(_Subclass)).as_subclass(torch.Tensor), want)
    assert fused.fused_layer_calls == calls
    torch.testing.assert_close(fused_forward(layer)(torch.nn.Parameter(x))[0], want)
