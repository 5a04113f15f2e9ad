"""Kept import path: the saved model's front end lives in :mod:`torchlap.models.wrapping`."""

from torchlap.models.wrapping import Normalize, NormalizedClassifier, SmallCNN

__all__ = ["Normalize", "NormalizedClassifier", "SmallCNN"]
