"""The dataset layer: uint8 tensor datasets, sub-task views, a device batch loader, built-in datasets."""

from bench.data.builtin import BUILTIN_DATASETS, DatasetSpec, default_data_root
from bench.data.tensors import BatchLoader, DataBundle, TensorData, stratified_split

__all__ = [
    "BUILTIN_DATASETS",
    "BatchLoader",
    "DataBundle",
    "DatasetSpec",
    "TensorData",
    "default_data_root",
    "stratified_split",
]
