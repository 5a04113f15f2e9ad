"""LocalAttentionPool2d / AdaptiveLocalAttentionPool2d as modules: maps, arguments, runtime."""

import gc
import os
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, attention_maps
from torchlap.layers import ConceptScorer, LapMaps


def tiny_lap_net(n_concepts: int = 1, aggregation: str = "max") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(6, 2, n_concepts=n_concepts, aggregation=aggregation),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(8, 1, n_concepts=n_concepts, aggregation=aggregation),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def test_alpha_and_eps_contract():
    lap = LocalAttentionPool2d(4, 2, alpha=2.5, eps=1e-5)
    assert isinstance(lap.alpha, nn.Parameter)
    assert dict(lap.named_parameters())["alpha"] is lap.alpha
    assert lap.alpha.item() == pytest.approx(2.5)
    assert lap.eps == 1e-5


def test_new_layer_starts_as_average_pooling():
    x = torch.randn(2, 4, 9, 9)
    lap = LocalAttentionPool2d(4, 3, 2, 1)
    torch.testing.assert_close(lap(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    adaptive = AdaptiveLocalAttentionPool2d(4, 1, n_concepts=3, aggregation="conv")
    torch.testing.assert_close(adaptive(x), F.adaptive_avg_pool2d(x, 1))


@pytest.mark.parametrize("aggregation", ["max", "sum", "mean", "conv"])
def test_maps_left_by_forward(aggregation):
    net = tiny_lap_net(n_concepts=3, aggregation=aggregation)
    x = torch.randn(2, 3, 16, 16)
    net(x)
    maps = attention_maps(net)
    assert list(maps) == ["2", "5"]
    assert maps["2"].concepts.shape == (2, 3, 16, 16)
    assert maps["2"].score.shape == (2, 1, 16, 16)
    assert maps["5"].concepts.shape == (2, 3, 8, 8)
    assert not maps["2"].concepts.requires_grad
    with_graph = attention_maps(net, detach=False)
    assert with_graph["2"].concepts.requires_grad
    for m in maps.values():
        assert ((m.concepts > 0) & (m.concepts < 1)).all()
        assert (m.score >= 0).all()


def test_aggregations_closed_forms():
    scorer = ConceptScorer(4, n_concepts=3, aggregation="sum")
    for conv in scorer.heads:
        if isinstance(conv, nn.Conv2d):
            nn.init.normal_(conv.weight)
    x = torch.randn(2, 4, 5, 5)
    concepts, score = scorer(x)
    torch.testing.assert_close(score, concepts.sum(1, keepdim=True))
    for name, reduce in [
        ("max", lambda c: c.amax(1, keepdim=True)),
        ("mean", lambda c: c.mean(1, keepdim=True)),
    ]:
        other = ConceptScorer(4, n_concepts=3, aggregation=name)
        other.load_state_dict(scorer.state_dict())
        c, s = other(x)
        torch.testing.assert_close(s, reduce(c))


def test_user_aggregation_module_and_shape_check():
    lap = LocalAttentionPool2d(4, 2, n_concepts=2, aggregation=nn.Conv2d(2, 1, 1))
    nn.init.constant_(lap.scorer.aggregate.weight, 0.5)
    nn.init.constant_(lap.scorer.aggregate.bias, 0.0)
    lap(torch.randn(1, 4, 4, 4))
    torch.testing.assert_close(lap.maps.score, lap.maps.concepts.sum(1, keepdim=True) * 0.5)
    bad = LocalAttentionPool2d(4, 2, n_concepts=2, aggregation=nn.Identity())
    with pytest.raises(ValueError, match="aggregation module returned shape"):
        bad(torch.randn(1, 4, 4, 4))


def test_every_parameter_gets_a_gradient_and_input_too():
    lap = LocalAttentionPool2d(4, 3, 2, 1, n_concepts=3, aggregation="conv")
    for module in lap.modules():  # leave the function-preserving start
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.5)
    x = torch.randn(2, 4, 9, 7, requires_grad=True)
    lap(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, param in lap.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_odd_sizes_and_nonsquare():
    lap = LocalAttentionPool2d(2, (3, 2), (2, 1), (1, 0), ceil_mode=True)
    out = lap(torch.randn(1, 2, 7, 5))
    ref = F.max_pool2d(torch.randn(1, 2, 7, 5), (3, 2), (2, 1), (1, 0), ceil_mode=True)
    assert out.shape == ref.shape


def test_device_and_dtype_arguments():
    lap = LocalAttentionPool2d(3, 2, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in lap.parameters())
    assert lap(torch.randn(1, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_no_grad_forward_leaves_detached_maps():
    net = tiny_lap_net()
    with torch.no_grad():
        net(torch.randn(1, 3, 8, 8))
    maps = attention_maps(net, detach=False)
    assert not any(m.score.requires_grad for m in maps.values())


def test_maps_do_not_accumulate_across_passes():
    lap = LocalAttentionPool2d(3, 2)
    refs = []
    for _ in range(5):
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        lap(x).sum().backward()
        refs.append(weakref.ref(lap.maps.concepts))
    gc.collect()
    # only the last pass's maps are alive
    assert sum(ref() is not None for ref in refs) == 1
    lap.clear_maps()
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_attention_maps_follow_forward_order():
    class Swapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = AdaptiveLocalAttentionPool2d(3, 1)
            self.early = LocalAttentionPool2d(3, 2)

        def forward(self, x):
            return self.late(self.early(x))

    model = Swapped()
    model(torch.randn(1, 3, 4, 4))
    assert list(attention_maps(model)) == ["early", "late"]
    with pytest.raises(ValueError, match="no LAP layer"):
        attention_maps(nn.Conv2d(1, 1, 1))


def test_a_layer_skipped_by_the_last_pass_keeps_its_maps_until_cleared():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = LocalAttentionPool2d(3, 2)
            self.b = LocalAttentionPool2d(3, 2)

        def forward(self, x, use_b):
            return self.b(x) if use_b else self.a(x)

    model = Branchy()
    model(torch.rand(1, 3, 8, 8), True)  # pass 1: b
    model(torch.rand(1, 3, 4, 4), False)  # pass 2: a only
    # as documented: b's maps of pass 1 are still there, ordered before pass 2's layers
    maps = attention_maps(model)
    assert list(maps) == ["b", "a"] and maps["b"].input_size == (8, 8)
    # the documented way to get exactly one pass's maps
    torchlap.clear_attention_maps(model)
    model(torch.rand(1, 3, 4, 4), False)
    assert list(attention_maps(model)) == ["a"]
    doc = " ".join(attention_maps.__doc__.split())
    assert "a layer not reached is left out" not in doc  # what it used to claim
    assert "skipped" in doc and "clear_attention_maps" in doc


def test_torch_compile_matches_eager():
    net = tiny_lap_net(n_concepts=2)
    x = torch.randn(2, 3, 8, 8)
    expected = net(x)
    compiled = torch.compile(net, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert attention_maps(net)["2"].concepts.shape == (2, 2, 8, 8)


def test_distributed_data_parallel_single_process(tmp_path):
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(29500 + os.getpid() % 1000)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        net = tiny_lap_net()
        ddp = nn.parallel.DistributedDataParallel(net)
        ddp(torch.randn(2, 3, 8, 8)).sum().backward()
        assert net[2].alpha.grad is not None
        assert set(attention_maps(net)) == {"2", "5"}
    finally:
        dist.destroy_process_group()


# ---- bad arguments -------------------------------------------------------------------------


def test_kernel_larger_than_padded_input():
    lap = LocalAttentionPool2d(3, 5)
    with pytest.raises(ValueError, match="larger than the padded input"):
        lap(torch.randn(1, 3, 4, 4))


def test_negative_padding():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        LocalAttentionPool2d(3, 2, padding=-1)


def test_padding_more_than_half_kernel():
    with pytest.raises(ValueError, match="at most half"):
        LocalAttentionPool2d(3, 2, padding=2)


def test_unknown_aggregation():
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        LocalAttentionPool2d(3, 2, n_concepts=2, aggregation="median")


def test_in_channels_mismatch_at_forward():
    lap = LocalAttentionPool2d(3, 2)
    with pytest.raises(ValueError, match="built for 3 input channels, got an input with 5"):
        lap(torch.randn(1, 5, 4, 4))


def test_wrong_rank_input():
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\)"):
        AdaptiveLocalAttentionPool2d(3)(torch.randn(3, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"in_channels": 0, "kernel_size": 2}, ValueError),
        ({"in_channels": 3.0, "kernel_size": 2}, TypeError),
        ({"in_channels": 3, "kernel_size": 0}, ValueError),
        ({"in_channels": 3, "kernel_size": "2"}, TypeError),
        ({"in_channels": 3, "kernel_size": 2, "stride": 0}, ValueError),
        ({"in_channels": 3, "kernel_size": 2, "n_concepts": 0}, ValueError),
        ({"in_channels": 3, "kernel_size": 2, "hidden_channels": -1}, ValueError),
        ({"in_channels": 3, "kernel_size": 2, "eps": 0.0}, ValueError),
        ({"in_channels": 3, "kernel_size": 2, "alpha": "big"}, TypeError),
    ],
)
def test_constructor_validation(kwargs, error):
    with pytest.raises(error):
        LocalAttentionPool2d(**kwargs)


def test_adaptive_output_size_validation():
    with pytest.raises(ValueError, match="output_size"):
        AdaptiveLocalAttentionPool2d(3, (0, 2))
    with pytest.raises(TypeError, match="output_size"):
        AdaptiveLocalAttentionPool2d(3, "7")
    pooled = AdaptiveLocalAttentionPool2d(3, (None, 2))(torch.randn(1, 3, 5, 6))
    assert pooled.shape == (1, 3, 5, 2)


def test_discriminative_scorer_sees_detached_input():
    lap = LocalAttentionPool2d(3, 2)
    scorer = lap.enable_discriminative_scorer()
    assert lap.enable_discriminative_scorer() is scorer
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    lap(x)
    maps = lap.maps
    assert isinstance(maps, LapMaps) and maps.discriminative is not None
    maps.discriminative.sum().backward()
    assert x.grad is None  # the discriminative module never sends gradient into the model
    assert scorer.heads[0].weight.grad is not None
    lap.disable_discriminative_scorer()
    lap(x)
    assert lap.maps.discriminative is None


def test_top_level_exports():
    for name in ["LocalAttentionPool2d", "AdaptiveLocalAttentionPool2d", "attention_maps"]:
        assert hasattr(torchlap, name)


def test_scorer_matmul_equals_convolution():
    scorer = ConceptScorer(5, n_concepts=2, hidden_channels=4, aggregation="mean")
    for module in scorer.heads:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight)
            nn.init.normal_(module.bias)
    x = torch.randn(2, 5, 6, 7)
    torch.testing.assert_close(scorer(x)[0], torch.sigmoid(scorer.heads(x)))


def test_ceil_mode_on_a_map_smaller_than_the_window_matches_pytorch():
    x = torch.randn(1, 2, 1, 1)
    lap = LocalAttentionPool2d(2, 2, 2, ceil_mode=True)
    out = lap(x)
    assert out.shape == F.max_pool2d(x, 2, 2, ceil_mode=True).shape
    torch.testing.assert_close(out, x)
    with pytest.raises(ValueError, match="larger than the padded input"):
        LocalAttentionPool2d(2, 2, 2)(x)


def test_deepcopy_and_state_after_a_forward_pass_with_graph():
    import copy

    lap = LocalAttentionPool2d(3, 2)
    lap(torch.randn(1, 3, 4, 4, requires_grad=True))
    twin = copy.deepcopy(lap)
    assert twin.maps is None and lap.maps is not None
    torch.testing.assert_close(twin.alpha, lap.alpha)
    assert twin.alpha is not lap.alpha


def test_input_on_another_device_than_the_layer():
    x = torch.randn(2, 4, 8, 8)
    for layer in (LocalAttentionPool2d(4, 2, device="meta"), AdaptiveLocalAttentionPool2d(4)):
        on, got = ("meta", "cpu") if layer.alpha.is_meta else ("cpu", "meta")
        with pytest.raises(ValueError, match=f"parameters on {on} but got an input on {got}"):
            layer(x.to(got))


def test_adaptive_layer_on_an_empty_map_says_so():
    with pytest.raises(ValueError, match="needs a feature map of at least 1x1 pixels"):
        AdaptiveLocalAttentionPool2d(4)(torch.rand(2, 4, 0, 8))
    assert AdaptiveLocalAttentionPool2d(4)(torch.rand(0, 4, 3, 3)).shape == (0, 4, 1, 1)


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("output_size", [1, 2, (1, 3)])
def test_adaptive_pool_of_an_empty_batch_on_every_path(backend, output_size):
    """An empty batch pools to an empty output and back on the PyTorch path too (where a
    reshape to ``-1`` pixels cannot be inferred), forward and backward."""
    from torchlap.layers.functional import adaptive_local_attention_pool2d

    x = torch.rand(0, 4, 3, 3, requires_grad=True)
    score = torch.rand(0, 1, 3, 3, requires_grad=True)
    out = adaptive_local_attention_pool2d(x, score, output_size, backend=backend)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    assert out.shape == (0, 4, *size)
    out.sum().backward()
    assert x.grad.shape == x.shape and score.grad.shape == score.shape


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: LocalAttentionPool2d(4, (True, 2)), TypeError, "kernel_size .*never a bool"),
        (lambda: LocalAttentionPool2d(4, 2, stride=(True, 1)), TypeError, "stride .*never a bool"),
        (lambda: AdaptiveLocalAttentionPool2d(4, (True, None)), TypeError, "never a bool"),
        (lambda: AdaptiveLocalAttentionPool2d(4, (2.0, 2)), TypeError, "never a bool or a float"),
        (lambda: LocalAttentionPool2d(4, 2, dtype=torch.int64), TypeError, "floating-point"),
        (lambda: AdaptiveLocalAttentionPool2d(4, dtype=torch.complex64), TypeError, "dtype"),
        (lambda: ConceptScorer(4, dtype=torch.uint8), TypeError, "floating-point torch.dtype"),
    ],
)
def test_bools_in_pairs_and_non_floating_dtypes_are_refused(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_map_accessors_check_their_arguments():
    net = tiny_lap_net()
    net(torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="detach must be True or False, got 'no'"):
        attention_maps(net, detach="no")
    for accessor in (attention_maps, torchlap.clear_attention_maps, torchlap.layers.lap_modules):
        with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
            accessor("x")


def test_module_forward_skips_the_functional_argument_checks(monkeypatch):
    # the per-op path (a hook on the scorer keeps the fused layer out) calls the unchecked core
    from torchlap.layers import functional

    def refuse(*args, **kwargs):
        raise AssertionError("the module's forward ran the public functions' checks")

    monkeypatch.setattr(functional, "_check_call", refuse)
    monkeypatch.setattr(functional, "_window_args", refuse)
    monkeypatch.setattr(functional, "_adaptive_output_args", refuse)
    x = torch.randn(2, 4, 6, 6)
    for layer, expected in (
        (LocalAttentionPool2d(4, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
        (AdaptiveLocalAttentionPool2d(4, (2, 3)), F.adaptive_avg_pool2d(x, (2, 3))),
    ):
        layer.scorer.register_forward_hook(lambda *args: None)
        torch.testing.assert_close(layer(x), expected)


def test_inputs_that_are_not_float_tensors_are_refused_also_under_autocast():
    """Before: a list gave an AttributeError, and under autocast an int tensor was accepted and
    failed inside the scorer's convolution."""
    lap = LocalAttentionPool2d(3, 2)
    with pytest.raises(TypeError, match=r"expects a .* torch.Tensor, got list"):
        lap([[1.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=r"non-floating-point torch.int64 input"):
            lap(torch.ones(1, 3, 4, 4, dtype=torch.long))
        assert lap(torch.ones(1, 3, 4, 4)).shape == (1, 3, 2, 2)
