"""torchlap.data: built-in localization benchmarks and user datasets with boxes and masks.

Every dataset yields the same sample dict (see ``torchlap.data._base``) and exposes
``classes``, ``n_channels``, ``image_size``, ``mean`` and ``std``; ``collate_regions`` batches
samples for a ``DataLoader``; ``load_dataset`` is the one entry point.
"""

from torchlap.data._base import (
    SPLITS,
    RegionDataset,
    boxes_to_mask,
    collate_regions,
    masks_to_tight_boxes,
)
from torchlap.data._subsets import first_images
from torchlap.data.annotations import (
    ANNOTATIONS,
    ImageRecord,
    read_annotations,
    write_annotations,
)
from torchlap.data.api import load_dataset
from torchlap.data.builtin import (
    BUILTINS,
    Concepts,
    Digits,
    Lesions,
    SyntheticBenchmark,
    builtin_dataset,
    builtin_names,
)
from torchlap.data.export import export_builtin
from torchlap.data.folder import AnnotatedFolder
from torchlap.data.images import DICOM_SUFFIXES, load_image
from torchlap.data.importers import celeba, imagenet_folder, rsna_pneumonia
from torchlap.data.plain_folder import image_folder
from torchlap.data.transforms import default_normalization, default_transforms

__all__ = [
    "ANNOTATIONS",
    "BUILTINS",
    "DICOM_SUFFIXES",
    "SPLITS",
    "AnnotatedFolder",
    "Concepts",
    "Digits",
    "ImageRecord",
    "Lesions",
    "RegionDataset",
    "SyntheticBenchmark",
    "boxes_to_mask",
    "builtin_dataset",
    "builtin_names",
    "celeba",
    "collate_regions",
    "default_normalization",
    "default_transforms",
    "export_builtin",
    "first_images",
    "image_folder",
    "imagenet_folder",
    "load_dataset",
    "load_image",
    "masks_to_tight_boxes",
    "read_annotations",
    "rsna_pneumonia",
    "write_annotations",
]
