"""Texts to vectors: the `Encoder` seam and the sentence-transformers encoder behind it."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 rows, so that cosine similarity is a dot product."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ...

    def forget_queries(self) -> None:
        """Empty the query cache (benchmarks time cold queries)."""
        with self._lock:
            self._cache.clear()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a folder or a name, on the CPU, offline."""

    def __init__(self, model: str, batch_size: int = 64, threads: int | None = None):
        # Weights never come from a hub at run time: the model is a folder on disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per model load is noise to a user

        if threads:
            torch.set_num_threads(threads)
        log.info("loading embedding model %s", model)
        if os.path.isdir(model):
            # A damaged weight file loads without complaint and embeds nonsense: check it first
            # (about 0.3 s for MiniLM's 91 MB, once per process).
            from .checksums import verify_model_files

            verify_model_files(model, "embedding model")
        try:
            self._model = SentenceTransformer(model, device="cpu")
        except Exception as error:  # the library raises many kinds; the user needs one message
            from .errors import BadInput

            raise BadInput("bad_model", f"cannot load embedding model {model!r}: {error}") from None
        self.name = model
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size
        self._tokenizer = self._model.tokenizer
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # One call at a time: the fast tokenizer keeps its padding and truncation settings in
        # shared state, and two requests encoding at once got each other's (a ValueError, and a
        # 500, under 8 concurrent clients). Torch already spreads one call over every core.
        with self._model_lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector, cached: people and tools repeat questions."""
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        vector = self.encode([text])[0]
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > 1024:
                self._cache.popitem(last=False)
        return vector

    def forget_queries(self) -> None:
        """Empty the query cache (benchmarks time cold queries)."""
        with self._lock:
            self._cache.clear()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._model_lock:
            encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]
