"""Models: a feature backbone plus a linear head. Importing registers the built-ins in `MODELS`."""

from harness.models import imagenet, resnet_cifar, resnet_menon  # noqa: F401  (registration)
from harness.models.base import MODELS, LTModel, build_model

__all__ = ["MODELS", "LTModel", "build_model"]
