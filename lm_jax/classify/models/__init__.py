"""Classifier families (config.model.kind): Kim's CNN, the recurrent and the CNN -> RNN classifiers, a language
model's encoder (ULMFiT)."""

from lm_jax.classify.models.interface import Classifier
from lm_jax.classify.models.registry import FAMILIES, default_model_config, model_from_config, validate

__all__ = ["Classifier", "FAMILIES", "default_model_config", "model_from_config", "validate"]
