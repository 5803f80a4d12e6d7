"""Dataset inspection for ``axonml data``: detect a dataset's format, describe it, validate it, split it.

Formats: IDX files (gzipped or not, MNIST's ``<part>-images-idx3-ubyte`` /
``<part>-labels-idx1-ubyte`` pairs), CIFAR-10/100 Python batch folders,
image-folder trees (one sub-folder per class, optionally under
``train``/``val``/``test`` folders) and CSV files (label in the last column,
or the one named). ``open_dataset`` reads one into a :class:`DatasetSource`;
``describe`` gives counts, shapes, dtypes, class distribution and pixel or
feature statistics; ``validate`` finds corrupt files, bad labels, class
imbalance and exact duplicates; ``split_dataset`` writes a deterministic
train/val/test split.
"""

from ._load import FORMATS, DatasetSource, Part, Problem, detect_format, open_dataset
from ._split import assign_splits, split_dataset
from ._stats import ChannelStats, decode_image, describe, validate

__all__ = ["FORMATS", "ChannelStats", "DatasetSource", "Part", "Problem", "assign_splits", "decode_image",
           "describe", "detect_format", "open_dataset", "split_dataset", "validate"]
