"""Explainers: LAP's own maps and the post-hoc methods it is compared with, behind one interface.

``torchlap.explain(model, images, method="lap", target=None, **options)`` returns one map per
image, ``(B, H, W)`` at the input resolution. Each method is an :class:`Explainer` class,
registered by name (:func:`available` lists them, :func:`get` returns one). What the package
knows about a method is on its class (display name, kind, the models it applies to, a native
threshold, its place in the default comparison set and in the tables) and is read through the
registry (:func:`comparison_methods`, :func:`applicability`, :func:`method_facts`); adding a
method is its file and its ``@register``:

========================  ============================================================
``lap``                   the LAP layers' own maps, one forward pass (paper 000)
``gradcam``               Grad-CAM (captum ``LayerGradCam``)
``guided_gradcam``        Guided Grad-CAM (captum ``GuidedGradCam``)
``guided_backprop``       Guided Backpropagation (captum ``GuidedBackprop``)
``deeplift``              DeepLIFT (captum ``DeepLift``)
``relevance_cam``         Relevance-CAM on zennit's LRP
``scorecam``              Score-CAM
``rise``                  RISE
``sise``                  SISE (paper 003)
``bla``                   a BLA/L2X-F module's own hard explanation delta (paper 002)
``antehoc``               the ante-hoc interpretation map of an AnteHocModel (paper 004)
``bcos``                  a B-cos network's contribution map W(x)^T x (Böhle et al. 2022)
========================  ============================================================
"""

from torchlap.explainers.base import (
    KINDS,
    Explainer,
    FeatureProbe,
    applicability,
    available,
    check_options,
    class_scores,
    comparison_methods,
    display_name,
    explain,
    get,
    method_facts,
    minmax_normalize,
    own_scale,
    probe_features,
    register,
    registered,
    table_order,
    unregister,
    upsample,
)
from torchlap.explainers.bcos import BcosExplainer
from torchlap.explainers.gradient import (
    DeepLift,
    GradCam,
    GuidedBackprop,
    GuidedGradCam,
    reduce_channels,
)
from torchlap.explainers.lap import LapExplainer, lap_all, select_lap_map
from torchlap.explainers.peers import AnteHocExplainer, BlaExplainer, find_antehoc
from torchlap.explainers.perturbation import Rise, RiseMasks, ScoreCam, rise_masks
from torchlap.explainers.relevance_cam import RelevanceCam
from torchlap.explainers.sise import Sise, otsu_threshold, sise_fusion

__all__ = [
    "KINDS",
    "AnteHocExplainer",
    "BcosExplainer",
    "BlaExplainer",
    "DeepLift",
    "Explainer",
    "FeatureProbe",
    "GradCam",
    "GuidedBackprop",
    "GuidedGradCam",
    "LapExplainer",
    "RelevanceCam",
    "Rise",
    "RiseMasks",
    "ScoreCam",
    "Sise",
    "applicability",
    "available",
    "check_options",
    "class_scores",
    "comparison_methods",
    "display_name",
    "explain",
    "find_antehoc",
    "get",
    "lap_all",
    "method_facts",
    "minmax_normalize",
    "otsu_threshold",
    "own_scale",
    "probe_features",
    "reduce_channels",
    "register",
    "registered",
    "rise_masks",
    "select_lap_map",
    "sise_fusion",
    "table_order",
    "unregister",
    "upsample",
]
