"""The explainer base class at the edges of its contract: the registry refuses bad facts at
registration, the explanation context keeps the model switched across nested ``with`` blocks and
takes off at its end every hook added inside it, a call's own hooks come off when the call ends,
the target check and the layer check refuse at their boundaries, and the probe that resolves
the layers sees one image."""

from __future__ import annotations

import pytest
import torch
from test_explainers_contract import lap_cnn, vanilla_cnn
from torch import Tensor, nn

from torchlap.explainers import (
    Explainer,
    GradCam,
    check_options,
    display_name,
    get,
    register,
    registered,
    table_order,
)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _state(model: nn.Module) -> list:
    return [(m.training, getattr(m, "inplace", None)) for m in model.modules()]


class _Mean(Explainer):
    """The images' channel mean (one forward for the target)."""

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        self.predict_target(images, target)
        return images.mean(dim=1)


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", ["", 3, None])
def test_register_refuses_a_name_that_is_no_non_empty_string(name: object) -> None:
    with pytest.raises(ValueError, match="an explainer name must be a non-empty string"):
        register(name)


@pytest.mark.parametrize(
    ("fact", "value", "message"),
    [
        ("display_name", 3, "display_name must be a str, got 3"),
        ("display_name", None, "display_name must be a str, got None"),
        ("comparison_rank", True, "comparison_rank must be an int or None, got True"),
        ("comparison_rank", 1.0, "comparison_rank must be an int or None, got 1.0"),
        ("column_rank", False, "column_rank must be an int or None, got False"),
        ("native_threshold", "0.5", "native_threshold must be a number or None, got '0.5'"),
        ("native_threshold", True, "native_threshold must be a number or None, got True"),
    ],
)
def test_register_refuses_bad_facts(fact: str, value: object, message: str) -> None:
    cls = type("Bad", (_Mean,), {fact: value})
    with pytest.raises(TypeError, match=rf"explainer 'bad_facts': {message}"):
        register("bad_facts")(cls)
    with pytest.raises(ValueError, match="unknown explainer 'bad_facts'"):
        get("bad_facts")


def test_register_accepts_good_facts_and_the_same_class_twice() -> None:
    facts = {"comparison_rank": None, "column_rank": 7, "native_threshold": 1}
    cls = type("Good", (_Mean,), {**facts, "display_name": ""})
    with registered("good_facts", cls):
        assert register("good_facts")(cls) is cls  # the same class again: no error
        assert get("good_facts") is cls and cls.name == "good_facts"
        assert display_name("good_facts") == "good_facts"  # "": the registered name
        cls.native_threshold = 0.25
        register("good_facts")(cls)
    with pytest.raises(ValueError, match="unknown explainer"):
        get("good_facts")
    assert display_name("gradcam") == "GC"


def test_registered_unregisters_also_when_the_block_raises() -> None:
    cls = type("ShortLived", (_Mean,), {})
    with pytest.raises(KeyError), registered("short_lived", cls):
        assert get("short_lived") is cls
        raise KeyError("inside")
    with pytest.raises(ValueError, match="unknown explainer 'short_lived'"):
        get("short_lived")


class _Options(_Mean):
    def __init__(self, model: nn.Module, alpha: int = 1, *extra: int, beta: int = 2) -> None:
        super().__init__(model)


class _AnyOptions(_Mean):
    def __init__(self, model: nn.Module, **options: object) -> None:
        super().__init__(model)


def test_check_options_names_the_unknown_ones_and_the_accepted_ones() -> None:
    with registered("opts", _Options), registered("any_opts", _AnyOptions):
        check_options("opts", {"alpha": 3, "beta": 4})
        check_options("opts", {})
        for unknown in ("gamma", "extra", "model"):
            with pytest.raises(
                ValueError, match=rf"opts has no option\(s\) \['{unknown}'\]; its options: alpha, "
                r"beta$"
            ):  # fmt: skip
                check_options("opts", {"alpha": 1, unknown: 1})
        check_options("any_opts", {"anything": 1, "model": 2})  # **options: every name goes
        with pytest.raises(TypeError, match="must be a dict of str keys"):
            check_options("opts", {1: 2})


def test_table_order_puts_unranked_and_unknown_names_last_in_the_order_given() -> None:
    cls = type("Unranked", (_Mean,), {})
    with registered("unranked_z", cls):
        names = ["unranked_z", "nosuch", "lap", "gradcam", "lap", "deeplift"]
        ranked = sorted(["lap", "gradcam", "deeplift"], key=lambda n: get(n).column_rank)
        assert table_order(names) == [*ranked, "unranked_z", "nosuch"]
        assert table_order(["nosuch", "unranked_z"]) == ["nosuch", "unranked_z"]


# ------------------------------------------------------------------- the explanation context


def test_nested_contexts_keep_the_model_switched_until_the_outermost_exit() -> None:
    model = vanilla_cnn().train()
    before = _state(model)
    explainer = GradCam(model)
    images = torch.rand(2, 3, 8, 8)
    with explainer:
        with explainer:
            pass
        assert not any(m.training for m in model.modules())  # still the explanation state
        assert not model[2].inplace
        explainer(images)
        assert not any(m.training for m in model.modules())
    assert _state(model) == before


def test_hooks_added_inside_the_context_come_off_at_its_end() -> None:
    model = vanilla_cnn()
    explainer = GradCam(model)
    with explainer:
        capture = explainer.capture("2")
        explainer.add_hook(model[4].register_forward_hook(lambda *args: None))
        model(torch.rand(1, 3, 8, 8))
        assert capture.get().shape == (1, 8, 8, 8)
        assert _hook_count(model) == 2
    assert _hook_count(model) == 0


def test_a_calls_hooks_come_off_when_the_call_ends() -> None:
    """Inside one ``with`` block, each call counts its own passes only."""
    model = vanilla_cnn()
    explainer = GradCam(model)
    images = torch.rand(2, 3, 8, 8)
    explainer.check_layers(images)  # the one-image probe, cached: not counted below
    with explainer:
        explainer(images, 1)
        first = dict(explainer.last_stats)
        assert _hook_count(model) == 0
        explainer(images, 1)
        assert explainer.last_stats == first
    # Grad-CAM: one forward and one backward pass per image
    assert first == {"forwards_per_image": 1.0, "backwards_per_image": 1.0}


class _Shaped(Explainer):
    def __init__(self, model: nn.Module, result: object) -> None:
        super().__init__(model)
        self.result = result

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        return self.result


@pytest.mark.parametrize(
    ("result", "shape"),
    [
        (torch.zeros(2, 1, 4, 4), r"\(2, 1, 4, 4\)"),
        (torch.zeros(2, 4), r"\(2, 4\)"),
        (torch.zeros(3, 4, 4), r"\(3, 4, 4\)"),
    ],
)
def test_raw_refuses_maps_that_are_not_one_per_image(result: object, shape: str) -> None:
    with pytest.raises(RuntimeError, match=rf"_Shaped returned {shape}, expected \(B, h, w\)"):
        _Shaped(vanilla_cnn(), result).raw(torch.rand(2, 3, 8, 8))
    assert _Shaped(vanilla_cnn(), torch.zeros(2, 4, 4)).raw(torch.rand(2, 3, 8, 8)).shape == (
        2,
        4,
        4,
    )


def test_maps_that_are_no_tensor_are_named() -> None:
    """Before: AttributeError "'list' object has no attribute 'detach'" from inside ``run``."""
    with pytest.raises(RuntimeError, match=r"_Shaped returned list, expected a tensor"):
        _Shaped(vanilla_cnn(), [[0.0]]).raw(torch.rand(2, 3, 8, 8))


def test_the_base_class_explains_nothing() -> None:
    with pytest.raises(NotImplementedError):
        Explainer(vanilla_cnn())(torch.rand(1, 3, 8, 8))


# ------------------------------------------------------------------ targets, rows and layers


def test_resolve_target_refuses_classes_outside_the_logits_at_both_ends() -> None:
    explainer = _Mean(vanilla_cnn())
    logits = torch.zeros(2, 3)
    for target in ([0, 3], [3, 0], [-1, 1], [1, -1]):
        with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\) for this"):
            explainer.resolve_target(torch.tensor(target), logits)
    last = torch.tensor([2, 0])
    assert explainer.resolve_target(last, logits) is last
    # one output per image: class 0 is the prediction
    predicted = explainer.resolve_target(None, torch.tensor([[0.3], [-2.0]]))
    assert predicted.tolist() == [0, 0]


@pytest.mark.parametrize("target", [None, torch.tensor([1, 1, 1])])
def test_resolve_target_refuses_a_row_with_one_non_finite_logit(target: Tensor | None) -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0], [0.0, float("nan"), 2.0], [0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"_Mean: the model returns NaN or infinite logits for "
                       r"images \[1\] \(batch indices\)"):  # fmt: skip
        _Mean(vanilla_cnn()).resolve_target(target, logits)


def test_check_finite_rows_looks_at_every_value_of_a_row() -> None:
    explainer = _Mean(vanilla_cnn())
    values = torch.zeros(3, 2, 2)
    explainer.check_finite_rows(values)
    values[2, 1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"returns NaN or infinite logits for images \[2\]"):
        explainer.check_finite_rows(values)
    with pytest.raises(ValueError, match=r"on masked copies of images \[0\]"):
        explainer.check_finite_rows(values, images=torch.tensor([1, 1, 0]), masked=True)


def test_a_layer_without_a_feature_map_output_is_refused_naming_the_default() -> None:
    with pytest.raises(
        ValueError,
        match=r"layer '8' outputs shape \(B, 16\); GradCam explains a layer with a \(B, C, h, w\) "
        r"output \(the default here: '5'\)",
    ):
        GradCam(vanilla_cnn(), layer="8")(torch.rand(1, 3, 8, 8))


def test_the_layer_check_probes_one_image() -> None:
    model = vanilla_cnn()
    batches: list[int] = []
    model.register_forward_pre_hook(lambda module, args: batches.append(len(args[0])))
    explainer = GradCam(model, layer="4")
    explainer.check_layers(torch.rand(4, 3, 8, 8))
    assert batches == [1]
    explainer.check_layers(torch.rand(4, 3, 8, 8))  # the same image size: the cached probe
    assert batches == [1]
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        explainer.check_layers(torch.rand(3, 8, 8))


@pytest.mark.parametrize("method", ["guided_backprop", "deeplift", "rise", "lap"])
def test_a_class_past_the_logits_is_refused_before_the_method_runs(method: str) -> None:
    """Every method, also those that hand the target to captum or never read the logits:
    the call's one-image target check names the range."""
    model = lap_cnn(num_classes=3)
    options = {"n_masks": 2} if method == "rise" else {}
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\) for this model"):
        get(method)(model, **options)(torch.rand(2, 3, 8, 8), 3)


class _Output(nn.Module):
    """A 'model' returning ``make(images)`` instead of logits."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def forward(self, images: Tensor):
        return self.make(images)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: (x.flatten(1)[:, :2],), r"model must return logits .*tuple"),
        (lambda x: x.flatten(1)[:, :2, None], r"\(2, 2, 1\)"),
        (lambda x: x.flatten(1)[:, 0], r"\(2,\) for a batch of 2 image\(s\): one score per image"),
    ],
)
def test_forward_refuses_an_output_that_is_no_logits(make, message: str) -> None:
    # Explainer.forward is what every method calls for its logits: a tuple, a 3-D tensor or
    # one score per image (the batch here is 2 images of 3 channels) are named, not used
    explainer = _Mean(_Output(make))
    with pytest.raises(TypeError, match=message):
        explainer.forward(torch.rand(2, 3, 4, 4))
    logits = _Mean(_Output(lambda x: x.flatten(1)[:, :2])).forward(torch.rand(2, 3, 4, 4))
    assert logits.shape == (2, 2)
