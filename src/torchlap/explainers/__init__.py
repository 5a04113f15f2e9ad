"""Explainers: LAP's own maps and the post-hoc methods it is compared with, behind one interface.

``torchlap.explain(model, images, method="lap", target=None, **options)`` returns one map per
image, ``(B, H, W)`` at the input resolution. Each method is an :class:`Explainer` class,
registered by name (:func:`available` lists them, :func:`get` returns one):

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
``bla``                   a BLA/L2X-F module's own soft explanation, one forward pass (paper 002)
``antehoc``               the ante-hoc interpretation map of an AnteHocModel (paper 004)
``bcos``                  a B-cos network's contribution map W(x)^T x (Böhle et al. 2022)
========================  ============================================================
"""

from torchlap.explainers.base import (
    Explainer,
    FeatureProbe,
    available,
    class_scores,
    explain,
    get,
    minmax_normalize,
    probe_features,
    register,
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
    "available",
    "class_scores",
    "explain",
    "find_antehoc",
    "get",
    "lap_all",
    "minmax_normalize",
    "otsu_threshold",
    "probe_features",
    "reduce_channels",
    "register",
    "rise_masks",
    "select_lap_map",
    "sise_fusion",
    "upsample",
]
