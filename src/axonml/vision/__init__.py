"""``axonml.vision``: computer-vision models, datasets and transforms, as ``torchvision``."""

from __future__ import annotations

from . import datasets, models, transforms
