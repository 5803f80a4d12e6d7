"""``axonml.vision.models``: image classifiers with torchvision's module names and state-dict keys.

Every builder (``resnet18``, ``vgg16_bn``, ``vit_tiny``, ``mobilenet_v2``, ``lenet5``, ...) is
in the registry: ``get_model("resnet18", num_classes=10)``, ``list_models(include="vit*")``,
and ``@register_model`` adds your own. A torchvision ``state_dict`` loads into the model of
the same name as it is (``model.load_state_dict(sd)``). No pretrained weights are bundled.
"""

from __future__ import annotations

from . import lenet, mobilenet, resnet, simple, vgg, vit
from ._registry import get_model, get_model_builder, list_models, register_model
from .lenet import *  # noqa: F403
from .misc import Conv2dNormActivation
from .mobilenet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .simple import *  # noqa: F403
from .vgg import *  # noqa: F403
from .vit import *  # noqa: F403

__all__ = [
    "Conv2dNormActivation", "get_model", "get_model_builder", "list_models", "register_model",
    *lenet.__all__, *simple.__all__, *resnet.__all__, *vgg.__all__, *vit.__all__, *mobilenet.__all__,
]
