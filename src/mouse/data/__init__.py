"""Datasets of step records: spec, on-disk format, window batching, augmentation, collection.

See DESIGN.md ("The step record") for the contract every column follows.
"""

from mouse.data.augment import AugmentConfig, augment
from mouse.data.collect import collect_dataset, ensure_dataset
from mouse.data.config import CollectConfig, PolicyConfig, TaskConfig
from mouse.data.loader import SAMPLING_MODES, WindowLoader
from mouse.data.spec import COLUMN_ORDER, FORMAT_VERSION, STEP_KEYS, DatasetSpec
from mouse.data.storage import StepDataset, load_dataset, save_dataset
from mouse.data.synthetic import synthetic_columns
from mouse.data.validate import validate_columns
from mouse.hub import push_dataset_to_hub

__all__ = [
    "AugmentConfig",
    "COLUMN_ORDER",
    "CollectConfig",
    "DatasetSpec",
    "FORMAT_VERSION",
    "PolicyConfig",
    "SAMPLING_MODES",
    "STEP_KEYS",
    "StepDataset",
    "TaskConfig",
    "WindowLoader",
    "augment",
    "collect_dataset",
    "ensure_dataset",
    "load_dataset",
    "push_dataset_to_hub",
    "save_dataset",
    "synthetic_columns",
    "validate_columns",
]
