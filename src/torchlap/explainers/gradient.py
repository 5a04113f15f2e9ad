"""Gradient explainers through captum, as the LAP paper ran them (paper 000, section IV).

``gradcam`` (Selvaraju et al. 2017, captum ``LayerGradCam``), ``guided_gradcam`` (captum
``GuidedGradCam``), ``guided_backprop`` (Springenberg et al. 2014, captum ``GuidedBackprop``) and
``deeplift`` (Shrikumar et al. 2017, captum ``DeepLift``, Rescale rule).

Map signs: Grad-CAM is ``ReLU(sum_k alpha_k A_k)`` (non-negative, at the layer's resolution).
The pixel-space methods return ``(B, C, H, W)`` attributions, reduced over channels by ``sign``:
``"absolute"`` (default) ``sum_c |a_c|``; ``"signed"`` ``sum_c a_c``; ``"positive"``
``max(sum_c a_c, 0)``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from torchlap._checks import check_bool, check_choice, check_number
from torchlap.explainers.base import Explainer, register
from torchlap.explainers.guided import guided_functional_relus, rescale_functional_relus
from torchlap.explainers.inputs import check_layer_option
from torchlap.explainers.maps import check_float_maps

__all__ = ["DeepLift", "GradCam", "GuidedBackprop", "GuidedGradCam", "reduce_channels"]

SIGNS = ("absolute", "signed", "positive")
#: how Guided Grad-CAM brings its Grad-CAM factor to the input resolution (``"nearest"``:
#: captum ``GuidedGradCam``'s default)
INTERPOLATE_MODES = ("bilinear", "nearest")


def reduce_channels(attributions: Tensor, sign: str = "absolute") -> Tensor:
    """Reduce ``(B, C, H, W)`` attributions to ``(B, H, W)`` maps (see the module docstring).

    ``attributions``: a floating tensor (B, C, H, W) (its values are not checked)."""
    check_float_maps(attributions, "attributions", "(B, C, H, W)")
    sign = _check_sign(sign)
    if sign == "absolute":
        return attributions.abs().sum(dim=1)
    if sign == "signed":
        return attributions.sum(dim=1)
    return attributions.sum(dim=1).clamp_min(0)  # "positive"


def _check_sign(sign: object) -> str:
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; expected one of {SIGNS}")
    return sign  # type: ignore[return-value]


@contextmanager
def _quiet_captum() -> Iterator[None]:
    """Silence captum's informational warnings (we set requires_grad and expect its hooks)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")
        warnings.filterwarnings("ignore", message=".*Setting backward hooks on ReLU.*")
        warnings.filterwarnings(
            "ignore", message=".*Setting forward, backward hooks and attributes.*"
        )
        yield


class _TargetScore(nn.Module):
    """``x -> logits[i, target_i]`` in one forward: captum then needs no ``target``.

    With ``target=None`` the class is the argmax of the same forward pass, so explaining the
    predicted class costs one forward and one backward pass, not an extra forward.
    """

    def __init__(self, explainer: Explainer, target: Tensor | None) -> None:
        super().__init__()
        self.model = explainer.model
        self._explainer = [explainer]  # a list, so that it is not registered as a submodule
        self.target = target
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        explainer = self._explainer[0]
        logits = explainer.forward(x)
        target = explainer.resolve_target(self.target, logits)
        return logits.gather(1, target.view(-1, 1))[:, 0]


def _gradient_input(images: Tensor) -> Tensor:
    return images.clone().requires_grad_(True)


class _LayerExplainer(Explainer):
    """Shared option handling for the methods that explain one feature layer."""

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None) -> None:
        super().__init__(model)
        self.layer = check_layer_option(model, layer)

    def explained_layers(self) -> list[str | nn.Module | None]:
        """The ``layer`` option (see :meth:`Explainer.explained_layers`)."""
        return [self.layer]

    def _layer_module(self, images: Tensor) -> nn.Module:
        name = self.resolve_layer(self.layer, images)
        return self.model.get_submodule(name)


@register("gradcam")
class GradCam(_LayerExplainer):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k A_k)``, ``alpha_k`` the spatial mean
    of ``d y_c / d A_k``; computed by captum's ``LayerGradCam`` on the target class's logit.

    Options: ``layer`` (``None``: the last feature layer before global pooling, see
    :class:`~torchlap.explainers.base.FeatureProbe`; or a module name such as ``"layer4"``),
    ``relu`` (``True``: keep the positive part, as in the paper). Raw maps are at the layer's
    resolution. Cost: one forward and one backward pass.
    """

    display_name = "GC"
    kind = "gradient"
    comparison_rank = 1
    column_rank = 2

    def __init__(
        self, model: nn.Module, layer: str | nn.Module | None = None, relu: bool = True
    ) -> None:
        super().__init__(model, layer)
        self.relu = check_bool(relu, "relu")

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        from captum.attr import LayerGradCam

        layer = self._layer_module(images)
        with _quiet_captum():
            maps = LayerGradCam(_TargetScore(self, target), layer).attribute(
                _gradient_input(images), relu_attributions=self.relu
            )
        return maps[:, 0]


@register("guided_gradcam")
class GuidedGradCam(_LayerExplainer):
    """Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the Grad-CAM map upsampled
    to the input (captum ``GuidedGradCam``'s computation; its guided half guides ReLUs applied as
    functions too, as :class:`GuidedBackprop`).

    Options: ``layer`` (as :class:`GradCam`), ``sign`` (channel reduction, default
    ``"absolute"``), ``interpolate_mode``: how the Grad-CAM factor reaches the input resolution,
    ``"bilinear"`` (default: as every map in torchlap, so that it is the GC column's map) or
    ``"nearest"`` (captum ``GuidedGradCam.attribute``'s default, the library paper 000 ran).
    Raw maps are at the input resolution.
    """

    display_name = "GGC"
    kind = "gradient"
    comparison_rank = 2
    column_rank = 1

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        sign: str = "absolute",
        interpolate_mode: str = "bilinear",
    ) -> None:
        super().__init__(model, layer)
        self.sign = _check_sign(sign)
        check_choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        self.interpolate_mode = interpolate_mode

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop
        from captum.attr import LayerAttribution, LayerGradCam

        # captum GuidedGradCam's two passes and product, with the guided half guiding ReLUs
        # applied as functions too (guided_functional_relus), as GuidedBackprop does
        layer = self._layer_module(images)
        score = _TargetScore(self, target)
        with _quiet_captum():
            cam = LayerGradCam(score, layer).attribute(
                _gradient_input(images), relu_attributions=True
            )
            with guided_functional_relus():
                guided = CaptumGuidedBackprop(score).attribute(_gradient_input(images))
        size = tuple(images.shape[2:])
        upsampled = LayerAttribution.interpolate(cam, size, self.interpolate_mode)
        return reduce_channels(guided * upsampled, self.sign)


@register("guided_backprop")
class GuidedBackprop(Explainer):
    """Guided Backpropagation (Springenberg et al. 2014): the input gradient of the target logit
    with negative gradients zeroed at every ReLU (captum ``GuidedBackprop`` for ``nn.ReLU``
    modules; :func:`~torchlap.explainers.guided.guided_functional_relus` for ReLUs applied as
    functions, e.g. ``F.relu`` in torchvision's Inception v3).

    Options: ``sign`` (channel reduction, default ``"absolute"``).
    """

    display_name = "GBP"
    kind = "gradient"
    comparison_rank = 3
    column_rank = 3

    def __init__(self, model: nn.Module, sign: str = "absolute") -> None:
        super().__init__(model)
        self.sign = _check_sign(sign)

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        with _quiet_captum(), guided_functional_relus():  # F.relu too, not only nn.ReLU
            attributions = CaptumGuidedBackprop(_TargetScore(self, target)).attribute(
                _gradient_input(images)
            )
        return reduce_channels(attributions, self.sign)


class _PerCall(nn.Module):
    """Stands in for a module that runs several times per forward pass: call ``k`` of each pass
    goes to its own copy ``copies[k]`` (``reset()`` starts a new pass)."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.count = 0

    def reset(self, *args: object) -> None:
        self.count = 0

    def forward(self, *args: object, **kwargs: object) -> object:
        module = self.copies[min(self.count, len(self.copies) - 1)]
        self.count += 1
        return module(*args, **kwargs)


_CAPTUM_ATTRIBUTES = frozenset({"input", "output"})


@contextmanager
def _unshared(model: nn.Module, shared: dict[str, int], explainer: Explainer) -> Iterator[None]:
    """Give each call of the modules in ``shared`` (name -> calls per pass) its own copy while
    the context is open, then put the original modules back (also on error).

    captum's DeepLift keeps each nonlinearity's input and output on the module, so a module that
    runs twice per forward (the ``relu`` of torchvision's ResNet blocks) breaks it.
    """
    modules = dict(model.named_modules())
    stand_ins = {
        id(modules[name]): _PerCall(modules[name], calls) for name, calls in shared.items()
    }
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    # captum leaves each nonlinearity's last input and output tensors on the module (memory
    # held after the call): removed at the end unless the module had such attributes before
    kept = {id(m): _CAPTUM_ATTRIBUTES & set(vars(m)) for m in model.modules()}
    try:
        for parent in model.modules():
            for child_name, child in list(parent._modules.items()):
                if child is not None and id(child) in stand_ins:
                    swapped.append((parent, child_name, child))  # first: undone whatever comes
                    parent._modules[child_name] = stand_ins[id(child)]
        for stand_in in stand_ins.values():
            explainer.hooks.forward_pre(model, stand_in.reset)
        yield
    finally:
        for parent, child_name, child in swapped:
            parent._modules[child_name] = child
        for module in model.modules():
            for key in _CAPTUM_ATTRIBUTES & set(vars(module)):
                if key not in kept.get(id(module), ()):
                    delattr(module, key)


def deeplift_eps(dtype: torch.dtype) -> float:
    """The input change below which DeepLIFT's Rescale rule takes the gradient instead of
    ``delta_out / delta_in``: captum's 1e-10, or ``dtype``'s smallest normal number when 1e-10
    is below it (in float16 1e-10 rounds to 0, so a nonlinearity whose input equals its
    baseline's divided 0 by 0 and the map held NaN pixels)."""
    return max(1e-10, float(torch.finfo(dtype).tiny))


@register("deeplift")
class DeepLift(Explainer):
    """DeepLIFT (Shrikumar et al. 2017, Rescale rule) through captum ``DeepLift``.

    Attributions ``(x - x_0) * m`` against the ``baseline`` ``x_0`` (default 0, the black image
    in the model's input space), reduced over channels by ``sign`` (default ``"absolute"``; with
    ``"signed"`` each map sums to ``y_c(x) - y_c(x_0)``). ``baseline``: a finite number or a
    finite real tensor broadcasting to the images (NaN or infinite values would make every map
    NaN, so they are refused). A nonlinearity module that runs several
    times per forward pass (torchvision ResNet's ``relu``) is replaced, for the call only, by a
    stand-in that sends each call to its own copy; the original module is put back afterwards.
    The Rescale rule's ``eps`` is :func:`deeplift_eps` of the images' dtype (float16: its
    smallest normal number, where captum's 1e-10 would be 0 and give NaN pixels). ReLUs applied
    as functions (``F.relu``, as in torchvision's Inception-v3) get the Rescale rule too
    (:func:`~torchlap.explainers.guided.rescale_functional_relus`; captum's hooks reach
    ``nn.ReLU`` modules only).
    """

    display_name = "DL"
    kind = "gradient"
    comparison_rank = 4
    column_rank = 0

    def __init__(
        self, model: nn.Module, baseline: float | Tensor = 0.0, sign: str = "absolute"
    ) -> None:
        super().__init__(model)
        if isinstance(baseline, Tensor):
            if baseline.dtype == torch.bool or baseline.is_complex():
                raise TypeError(
                    f"baseline must be a finite number or a real tensor, got dtype {baseline.dtype}"
                )
            if baseline.is_floating_point() and not bool(baseline.isfinite().all()):
                raise ValueError(
                    "baseline must be finite (the reference image x_0 of DeepLIFT): it holds NaN "
                    "or infinite values"
                )
        else:
            baseline = check_number(
                baseline, "baseline", accepted="a finite number or a tensor of finite values"
            )
        self.baseline = baseline
        self.sign = _check_sign(sign)

    def _shared_nonlinearities(self, images: Tensor) -> dict[str, int]:
        from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

        calls = self.feature_probe(images).calls
        modules = dict(self.model.named_modules())
        return {
            name: count
            for name, count in calls.items()
            if count > 1 and isinstance(modules[name], tuple(SUPPORTED_NON_LINEAR))
        }

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        from captum.attr import DeepLift as CaptumDeepLift

        target = self.predict_target(images, target)
        baseline = self.baseline
        if isinstance(baseline, Tensor):
            try:
                baseline = torch.broadcast_to(baseline.to(images), images.shape).contiguous()
            except RuntimeError:
                raise ValueError(
                    f"baseline of shape {tuple(self.baseline.shape)} does not broadcast to the "
                    f"images' shape {tuple(images.shape)}"
                ) from None
        shared = self._shared_nonlinearities(images)
        # captum's one forward runs the images and their baselines (rows i and B + i): their
        # logits are checked there (a given target resolves without a forward of its own)
        rows = torch.arange(2 * images.shape[0], device=images.device) % images.shape[0]

        def check_logits(module: nn.Module, args: tuple, logits: object) -> None:
            if isinstance(logits, Tensor) and logits.dim() == 2:
                self.check_finite_rows(logits, rows[: logits.shape[0]])

        self.hooks.forward(self.model, check_logits)
        eps = deeplift_eps(images.dtype)
        # captum's Rescale rule for nn.ReLU modules; rescale_functional_relus for F.relu & co.
        with _unshared(self.model, shared, self), _quiet_captum(), rescale_functional_relus(eps):
            attributions = CaptumDeepLift(self.model, eps=eps).attribute(
                _gradient_input(images), baselines=baseline, target=target
            )
        return reduce_channels(attributions, self.sign)
