"""The model zoo: CNNs and ViTs for 32x32 inputs, and what a registered model is."""

from bench.models.layers import ConvUnit, LinearUnit, Residual, units
from bench.models.spec import ModelSpec

__all__ = ["ConvUnit", "LinearUnit", "ModelSpec", "Residual", "units"]
