"""Storage backends: `base` (the interface), `factory` (picks one from the settings), and one
module per backend (`sqlite`, the default; `milvus`)."""

from .base import StoreBackend
from .factory import BACKENDS, open_backend, open_stored

__all__ = ["BACKENDS", "StoreBackend", "open_backend", "open_stored"]
