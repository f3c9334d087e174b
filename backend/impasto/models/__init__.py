"""Model files (safetensors + metadata), the store, and converters from other formats."""

from impasto.models.info import ModelInfo

__all__ = ["ModelInfo"]
