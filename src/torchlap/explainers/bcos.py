"""``bcos``: the dynamic linear contribution map of a B-cos network (Böhle et al. 2022).

A B-cos network computes, for every input, an input-dependent linear map:
``y(x) = W(x)^T x`` (section 3 of the paper; the logit bias is a constant). With the dynamic
scalings detached ("explanation mode", the package's ``set_explanation_mode``), the gradient of
the class logit with respect to the *encoded* input ``x = [r, g, b, 1-r, 1-g, 1-b]`` is exactly
``W(x)`` for that class, and the contribution map is ``W(x) * x`` summed over the input channels
(the paper's Fig. 1 contribution maps): one signed value per pixel, summing to the class logit
minus its bias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchlap.explainers.base import Explainer, register
from torchlap.models.bcos import find_bcos

__all__ = ["BcosExplainer"]


@register("bcos")
class BcosExplainer(Explainer):
    """Contribution maps ``sum_c W(x)_c * x_c`` of a B-cos model (one forward, one backward).

    Raises ``ValueError`` for a model without a :class:`~torchlap.models.bcos.BcosClassifier`.
    Every module's explanation-mode flag is restored afterwards, also on error.
    """

    display_name = "B-cos"
    kind = "own map"
    column_rank = 11
    not_applicable = "the model is not a B-cos network"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """A model holding a B-cos network."""
        return find_bcos(model) is not None

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        bcos = find_bcos(model)
        if bcos is None:
            raise ValueError(
                "the 'bcos' explainer needs a B-cos model (torchlap train --model bcos, or "
                "torchlap.models.build_bcos); use a post-hoc method for other models"
            )
        self.bcos = bcos

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        encoded: list[Tensor] = []

        def keep_encoded(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            leaf = output.detach().requires_grad_(True)
            encoded.append(leaf)
            return leaf

        switches = [m for m in self.model.modules() if hasattr(m, "set_explanation_mode")]
        saved = [bool(getattr(m, "detach", False)) for m in switches]
        self.hooks.forward(self.bcos.encode, keep_encoded)
        try:
            for module in switches:
                module.set_explanation_mode(True)
            with torch.enable_grad():
                logits = self.forward(images)
                target = self.resolve_target(target, logits)
                score = logits.gather(1, target.view(-1, 1)).sum()
                (weights,) = torch.autograd.grad(score, encoded[-1])
        finally:
            for module, flag in zip(switches, saved, strict=True):
                module.set_explanation_mode(flag)
        return (weights * encoded[-1]).sum(dim=1)
