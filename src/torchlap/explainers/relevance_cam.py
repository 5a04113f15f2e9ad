"""``relevance_cam``: Relevance-CAM (Lee et al., CVPR 2021) on zennit's LRP.

Relevance-CAM weighs a layer's feature maps ``A_k`` by their LRP relevance instead of their
gradient: ``alpha_k = sum_ij R_k(i, j)``, map ``= ReLU(sum_k alpha_k A_k)``, where ``R`` is the
relevance of the target class propagated from the output down to the layer.

No library ships Relevance-CAM, so it is written here on zennit: a zennit composite (default
``EpsilonPlus``: LRP-epsilon for dense layers, z+ for convolutions, pass-through for
activations and batch norms, normalisation for sums and average pools) with zennit's canonizers
(``ResNetCanonizer`` for torchvision ResNets, ``VGGCanonizer`` for VGGs, otherwise each batch
norm merged into the convolution a probe forward shows it reading; the canonized model's logits
are checked against the model's once) gives the relevance at the layer as the "gradient" with
respect to its output. The initial relevance is the target logit ``y_c`` itself, at the target
only (standard LRP: the relevance of the output is its value). zennit's convention, 1, is not
used: its epsilon rule at the classifier divides by ``y_c``, so a start of 1 scaled every
channel weight by ``1 / y_c`` and flipped the map's sign with a negative target logit (a
classifier bias shifted from +5 to -5 turned the map into its opposite, then into zeros after
the ReLU). This makes the map independent of the logit's sign where the classifier is a dense
layer under the epsilon rule (torchvision's and torchlap's models). Where the class scores come
from a 1x1 convolution before a global average pool, z+ at that convolution does not divide by
``y_c``, so a negative target logit gives negative relevance and an all-zero map after the ReLU
(a start of 1 gave a map that still depended on the bias); choose a composite with an epsilon
rule for that convolution there.

The authors' code (mongeoroo/Relevance-CAM) differs in two ways torchlap does not follow: it
starts from a contrastive relevance (CLRP: the target's relevance minus that of the other
classes) and applies the z+ rule (alpha = 1, beta = 0) to the classifier as well as to the
convolutions; torchlap keeps zennit's composites (default ``EpsilonPlus``: epsilon at the
classifier) and the target class's own relevance.

LAP layers get an LRP rule too: with the attention weights held constant a LAP window is a
weighted average of its pixels, so relevance is redistributed in proportion to each pixel's
contribution ``w_ij x_ij`` (zennit's ``Norm`` rule applied to the pool with detached scores).

The blocks ``torchlap.lapify`` puts into ResNets and Inception (``LapResidualBlock``,
``LapInceptionReduction``) get a canonizer of their own (zennit has none for them): each
convolution they pool with the LAP's score becomes a module with the same ``Norm`` rule, and a
residual sum becomes zennit's ``Sum`` (``Norm`` too), as zennit's ``ResNetCanonizer`` does for
torchvision's blocks. Without it the residual ``+`` passes the whole relevance to both branches,
doubling it at every such block. BatchNorm merging stays valid across the pooling: its weights
are shared by all channels and sum to one, so it commutes with a per-channel affine map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap.explainers.base import Explainer, register
from torchlap.explainers.inputs import check_layer_option
from torchlap.layers._state import kept_last_maps
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LapBase, LocalAttentionPool2d
from torchlap.models.bcos import find_bcos
from torchlap.models.blocks import SharedScoreBlock, pool_with_shared_score
from torchlap.models.folding import conv_bn_pairs, logits_agree

__all__ = ["COMPOSITES", "RelevanceCam", "SharedScorePool"]


def _composites() -> dict[str, Callable[..., object]]:
    from zennit import composites

    return {
        "epsilon_plus": composites.EpsilonPlus,
        "epsilon_plus_flat": composites.EpsilonPlusFlat,
        "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1,
        "epsilon_alpha2_beta1_flat": composites.EpsilonAlpha2Beta1Flat,
    }


COMPOSITES = (
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
)


def _module_state(model: nn.Module) -> list[tuple[nn.Module, dict, dict, dict, set, dict]]:
    """What a canonizer may change on each module: its parameter, buffer and child dicts, the
    tensors behind its parameters and buffers (``.data``), and its instance attributes."""
    state = []
    for module in model.modules():
        tensors = {
            (kind, key): value.data
            for kind, entries in (("p", module._parameters), ("b", module._buffers))
            for key, value in entries.items()
            if value is not None
        }
        entries = (dict(module._parameters), dict(module._buffers), dict(module._modules))
        state.append((module, *entries, set(vars(module)), tensors))
    return state


def _put_back(state: list[tuple[nn.Module, dict, dict, dict, set, dict]]) -> None:
    """Undo every change :func:`_module_state` describes (last module first)."""
    for module, parameters, buffers, children, names, tensors in reversed(state):
        for current, saved in (
            (module._parameters, parameters),
            (module._buffers, buffers),
            (module._modules, children),
        ):
            current.clear()
            current.update(saved)
        for key in set(vars(module)) - names:
            delattr(module, key)
        for (kind, key), data in tensors.items():
            (parameters if kind == "p" else buffers)[key].data = data


@contextmanager
def composite_on(composite: object, model: nn.Module) -> Iterator[nn.Module]:
    """zennit's ``composite.context(model)``, also undone when registering fails midway.

    zennit's context leaves whatever a failed ``register`` did in place: a canonizer that
    raises on its third module (``SequentialMergeBatchNorm`` on a batch norm without affine
    parameters) keeps the first two batch norms merged into the weights before them, for good.
    Here a failed registration removes zennit's hooks and canonizers and puts back every
    parameter, buffer, child module and instance attribute the canonizers changed.
    """
    state = _module_state(model)
    try:
        composite.register(model)  # type: ignore[attr-defined]
    except BaseException:
        try:
            composite.remove()  # type: ignore[attr-defined]
        finally:
            _put_back(state)
        raise
    try:
        yield model
    finally:
        composite.remove()  # type: ignore[attr-defined]


def _lap_forward_constant_weights(self: LapBase, x: Tensor) -> Tensor:
    """LAP forward with the scores detached: the pool is then linear in ``x``.

    The stored maps are detached too, so that modules reading ``lap.maps`` (lapify's residual
    blocks pool their main path with the LAP's score) do not send relevance into the scorer.
    """
    score = self._score(x).detach()
    self.maps = self.maps.detach()
    if isinstance(self, LocalAttentionPool2d):
        geometry = (self.kernel_size, self.stride, self.padding)
        return local_attention_pool2d(x, score, *geometry, self.alpha, self.eps, self.ceil_mode)
    if isinstance(self, AdaptiveLocalAttentionPool2d):
        return adaptive_local_attention_pool2d(x, score, self.output_size, self.alpha, self.eps)
    raise TypeError(f"no LRP rule for LAP layer type {type(self).__name__}")


def _lap_attribute_map(name: str, module: nn.Module) -> dict | None:
    if isinstance(module, LapBase):
        return {"forward": _lap_forward_constant_weights.__get__(module)}
    return None


class SharedScorePool(nn.Module):
    """One shared-score pooling of a :class:`SharedScoreBlock` as a module, so that an LRP rule
    can attach to it; the score is the block's LAP's latest (detached) score map."""

    def __init__(self, block: SharedScoreBlock, name: str) -> None:
        super().__init__()
        self._block = (block,)  # a tuple: not registered, the block is this module's parent
        self.name = name

    def forward(self, features: Tensor) -> Tensor:
        """The block's pooling of convolution ``name``'s output ``features``."""
        block = self._block[0]
        stride, offset = block.shared_pools()[self.name]
        score = block.lap.maps.score.detach()
        return pool_with_shared_score(features, score, stride, offset, block.lap)


def _shared_score_attribute_map(name: str, module: nn.Module) -> dict | None:
    """Canonizer attributes of a :class:`SharedScoreBlock`: pooling modules and a ``Sum``."""
    if not isinstance(module, SharedScoreBlock):
        return None
    from zennit.layer import Sum

    pools = nn.ModuleDict({key: SharedScorePool(module, key) for key in module.shared_pools()})
    summer = Sum()

    def pool_shared(key: str, features: Tensor, score: Tensor) -> Tensor:
        return pools[key](features)

    def residual_sum(shortcut: Tensor, main: Tensor) -> Tensor:
        return summer(torch.stack([shortcut, main], dim=-1))

    return {
        "canonizer_pools": pools,
        "canonizer_sum": summer,
        "pool_shared": pool_shared,
        "residual_sum": residual_sum,
    }


def _default_canonizers(model: nn.Module, probe: Tensor, layer: nn.Module) -> list:
    """zennit's ``ResNetCanonizer`` for torchvision ResNets, ``VGGCanonizer`` for VGGs, and for
    every other model the batch norms merged into the convolutions a probe forward shows them
    reading (:func:`_probed_batch_norm_merge`)."""
    from torchvision.models import VGG
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if any(isinstance(m, (BasicBlock, Bottleneck)) for m in model.modules()):
        return [ResNetCanonizer()]
    if isinstance(model, VGG):
        return [VGGCanonizer()]
    return [_probed_batch_norm_merge(model, probe, layer)]


def _probed_batch_norm_merge(model: nn.Module, probe: Tensor, layer: nn.Module) -> object:
    """A zennit canonizer merging each batch norm into the convolution whose output it reads,
    as one probe forward shows (:func:`torchlap.models.folding.conv_bn_pairs`).

    zennit's ``SequentialMergeBatchNorm`` merges a batch norm into the linear leaf registered
    before it, which is the layer before it in the forward only for plain chains: it merged the
    batch norm after a lapified MobileNet's, EfficientNet's or RegNet's strided convolution
    (``LapConv2d``) into the LAP scorer's last 1x1 convolution (the call then failed on the
    score's shape), and the batch norm applied to a residual sum or a concatenation
    (pre-activation blocks, DenseNet) into whichever convolution came last, explaining another
    network. The explained layer's own convolution is left unmerged (its output is what the
    method reads). A convolution whose output something else reads too (a pre-activation
    block's input, both normalised and added to the block's output) would change that reader:
    when merging every pair changes the probe's logits, each pair is merged only if merging it
    alone leaves them unchanged (one probe forward per pair, once per explainer and model).
    Hand-written: zennit's merge canonizers pick pairs by module order only."""
    from zennit.canonizers import MergeBatchNorm

    found, plain = conv_bn_pairs(model, probe)
    pairs = [
        (conv, bn)
        for conv, _, _, bn in found
        if conv is not layer and bn.weight is not None and bn.bias is not None
    ]

    class ProbedMergeBatchNorm(MergeBatchNorm):
        def __init__(self, chosen: Sequence[tuple[nn.Module, nn.Module]] = ()) -> None:
            super().__init__()
            self.chosen = list(chosen)

        def apply(self, root_module: nn.Module) -> list:
            instances = []
            for conv, bn in self.chosen:
                instance = self.copy()
                instance.register((conv,), bn)
                instances.append(instance)
            return instances

        def copy(self) -> MergeBatchNorm:
            return ProbedMergeBatchNorm(self.chosen)

    if pairs and not _same_outputs(model, ProbedMergeBatchNorm(pairs), probe, plain):
        pairs = [
            pair
            for pair in pairs
            if _same_outputs(model, ProbedMergeBatchNorm([pair]), probe, plain)
        ]
    return ProbedMergeBatchNorm(pairs)


def _same_outputs(model: nn.Module, canonizer: object, probe: Tensor, plain: Tensor) -> bool:
    """Whether the model with ``canonizer`` applied gives the probe's logits ``plain``."""
    instances = canonizer.apply(model)  # type: ignore[attr-defined]
    try:
        canonized = model(probe.clone())
    finally:
        for instance in reversed(instances):
            instance.remove()
    return logits_agree(plain, canonized)[0]


def _check_same_outputs(model: nn.Module, composite: object, probe: Tensor, plain: Tensor) -> None:
    """``ValueError`` unless the model under ``composite`` (its canonizers) gives the probe's
    logits ``plain``: a canonizer that merged a batch norm into a layer it does not follow
    would explain another network."""
    with composite_on(composite, model), torch.no_grad():
        canonized = model(probe.clone())
    agree, error, scale = logits_agree(plain, canonized)
    if not agree:
        raise ValueError(
            f"relevance_cam's default canonizers change this model's outputs (largest logit "
            f"difference {error:.3g}, largest logit {scale:.3g}): they would explain another "
            "network; pass canonizers=[] (LRP without merging batch norms) or canonizers of "
            "your own"
        )


def _check_canonizers(canonizers: object) -> None:
    """``"auto"`` or a list of ``zennit.canonizers.Canonizer`` instances, else ``TypeError``
    (zennit would fail deep inside the first call, with ``'int' object has no attribute
    'apply'``)."""
    accepted = "'auto' or a list of zennit canonizers (zennit.canonizers.Canonizer instances)"
    if isinstance(canonizers, str):
        if canonizers != "auto":
            raise TypeError(f"canonizers must be {accepted}, got {canonizers!r}")
        return
    if not isinstance(canonizers, Sequence):
        raise TypeError(f"canonizers must be {accepted}, got {canonizers!r}")
    from zennit.canonizers import Canonizer

    for i, canonizer in enumerate(canonizers):
        if not isinstance(canonizer, Canonizer):
            raise TypeError(
                f"canonizers must be {accepted}; canonizers[{i}] is {canonizer!r} "
                f"({type(canonizer).__name__})"
            )


def _check_mergeable_batch_norms(model: nn.Module) -> None:
    """``ValueError`` for a batch norm that the default canonizers would merge into the layer
    before it (zennit's ``SequentialMergeBatchNorm``: a batch norm right after a linear or
    convolutional leaf) but cannot: one without affine parameters or running statistics.
    zennit failed on it deep inside the first call (``'NoneType' object has no attribute
    'data'``), with the batch norms merged before it left in the weights."""
    from zennit.core import collect_leaves
    from zennit.types import BatchNorm, Linear

    names = {id(module): name for name, module in model.named_modules()}
    previous = None
    for leaf in collect_leaves(model):
        if isinstance(previous, Linear) and isinstance(leaf, BatchNorm):
            missing = None
            if leaf.weight is None or leaf.bias is None:
                missing = "affine parameters (affine=False)"
            elif leaf.running_mean is None or leaf.running_var is None:
                missing = "running statistics (track_running_stats=False)"
            if missing is not None:
                raise ValueError(
                    f"relevance_cam's default canonizers merge each batch norm into the layer "
                    f"before it, which needs the batch norm's weight, bias and running "
                    f"statistics; {names.get(id(leaf), type(leaf).__name__)!r} has no "
                    f"{missing}; pass canonizers=[] (LRP without merging) or canonizers of "
                    "your own"
                )
        previous = leaf


@register("relevance_cam")
class RelevanceCam(Explainer):
    """Relevance-CAM (Lee et al. 2021) on zennit (see the module docstring).

    Options: ``layer`` (``None``: the last feature layer before global pooling, or a module
    name), ``composite`` (one of :data:`COMPOSITES`, default ``"epsilon_plus"``),
    ``canonizers`` (``"auto"`` or a list of ``zennit.canonizers.Canonizer`` instances; anything
    else raises ``TypeError``). Raw maps are at the layer's
    resolution. Cost: one forward and one (modified) backward pass.
    """

    display_name = "RC"
    kind = "gradient"
    comparison_rank = 5
    column_rank = 4
    not_applicable = (
        "Relevance-CAM's LRP rules are defined for networks of affine layers and ReLUs; a B-cos "
        "network has neither (its units scale by the cosine to their input, its norms are "
        "bias-free without running means), and zennit has no rules for it"
    )

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """Every model but a B-cos network (see :attr:`not_applicable`)."""
        return find_bcos(model) is None

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        composite: str = "epsilon_plus",
        canonizers: str | Sequence = "auto",
    ) -> None:
        super().__init__(model)
        if not self.applies_to(model):
            raise ValueError(f"relevance_cam does not apply to this model: {self.not_applicable}")
        if composite not in COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}; expected one of {COMPOSITES}")
        _check_canonizers(canonizers)
        if canonizers == "auto":
            _check_mergeable_batch_norms(model)
        self.layer = check_layer_option(model, layer)
        self.composite = composite
        self.canonizers = canonizers
        self._checked: tuple[tuple[int, ...], list] | None = None

    def explained_layers(self) -> list[str | nn.Module | None]:
        """The ``layer`` option (see :meth:`Explainer.explained_layers`)."""
        return [self.layer]

    def _make_composite(self, probe: Tensor, layer: nn.Module) -> object:
        """The zennit composite with its canonizers; with ``canonizers="auto"`` its canonized
        model is checked once (per model structure) to give ``probe``'s logits."""
        if self.canonizers != "auto":
            return self._composite(list(self.canonizers))
        structure = (id(layer), *(id(module) for module in self.model.modules()))
        if self._checked is not None and self._checked[0] == structure:
            return self._composite(self._checked[1])
        with torch.no_grad(), kept_last_maps(self.model):
            plain = self.model(probe.clone())  # a module may write its input in place
            canonizers = _default_canonizers(self.model, probe, layer)
            _check_same_outputs(self.model, self._composite(canonizers), probe, plain)
        self._checked = (structure, canonizers)  # the probe forwards once per model and layer
        return self._composite(canonizers)

    def _composite(self, canonizers: list) -> object:
        from zennit.canonizers import AttributeCanonizer
        from zennit.rules import Norm

        canonizers = [
            *canonizers,
            AttributeCanonizer(_lap_attribute_map),
            AttributeCanonizer(_shared_score_attribute_map),
        ]
        layer_map = [((LapBase, SharedScorePool), Norm())]
        return _composites()[self.composite](layer_map=layer_map, canonizers=canonizers)

    def relevance(self, images: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(activations A, relevance R, target)`` at the layer; call inside :meth:`run`."""
        name = self.resolve_layer(self.layer, images)
        composite = self._make_composite(images[:1], self.model.get_submodule(name))
        capture = self.capture(name)
        inputs = images.clone().requires_grad_(True)
        with composite_on(composite, self.model), torch.enable_grad():
            logits = self.forward(inputs)
            target = self.resolve_target(target, logits)
            activations = capture.get()
            # standard LRP: the output's relevance is its value, y_c at the target class
            initial = F.one_hot(target, logits.shape[1]).to(logits.dtype) * logits.detach()
            (relevance,) = torch.autograd.grad(logits, activations, grad_outputs=initial)
        return activations.detach(), relevance, target

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        activations, relevance, _ = self.relevance(images, target)
        weights = relevance.sum(dim=(2, 3))
        return torch.relu((weights[:, :, None, None] * activations).sum(dim=1))
