"""Texts to vectors: the `Encoder` seam and the two encoders behind it.

- `OnnxEncoder`: the shipped int8 ONNX export of all-MiniLM-L6-v2 (`qa/models/encoder`), run by
  ONNX Runtime without torch; the default (`QA_ENCODER=auto`).
- `SentenceTransformerEncoder`: any sentence-transformers model in float32 through torch
  (`QA_ENCODER=torch`, or any `QA_MODEL` other than the bundled MiniLM).

`make_encoder(settings)` picks one. An index records which encoder built it (`encoder` in its
manifest) and refuses vectors of another.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from . import int8

log = logging.getLogger(__name__)


SHIPPED_ENCODER = Path(__file__).resolve().parent / "models" / "encoder"


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 rows, so that cosine similarity is a dot product.

    `name` is the model (a folder or a name); `identity` says which weights and runtime made the
    vectors, so that an index never mixes two encoders' vectors."""

    name: str
    identity: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ...

    def forget_queries(self) -> None:
        """Empty the query cache (benchmarks time cold queries)."""
        with self._lock:
            self._cache.clear()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        ...


class _QueryCache:
    """`encode_query` with a bounded cache of recent queries, over the subclass's `encode`."""

    def _start_cache(self) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

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


class SentenceTransformerEncoder(_QueryCache):
    """A sentence-transformers model loaded from a folder or a name, on the CPU, offline, float32."""

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
        self.identity = "torch-float32"
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size
        self._tokenizer = self._model.tokenizer
        self._start_cache()
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

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._model_lock:
            encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]


class OnnxEncoder(_QueryCache):
    """An ONNX export of a mean-pooled sentence-transformers model (by default the shipped int8
    all-MiniLM-L6-v2 in `qa/models/encoder`), run by ONNX Runtime on the CPU; torch is never
    imported.

    Each text is run on its own (batch of one): dynamic int8 quantisation scales the activations
    of the whole batch together, so a text's vector would otherwise depend on its batch mates and
    their padding. Alone, a text always gets the same vector (ingest, query, any order), and no
    padding is computed, which costs less than batching saves here (docs/measurements.md).
    Each run is single-threaded; `threads` texts run at once (ONNX Runtime releases the GIL),
    which uses the cores far better than splitting one small run over them.
    """

    def __init__(self, folder: str | Path = SHIPPED_ENCODER, threads: int | None = None, batch_size: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from .checksums import verify_model_files
        from .errors import BadInput

        folder = Path(folder)
        if not (folder / "model.onnx").is_file() or not (folder / "encoder.json").is_file():
            raise BadInput("bad_model", f"no ONNX encoder in {folder} (model.onnx and encoder.json); "
                           "build it with `python -m qa.training.encoder --out FOLDER`")
        # A damaged file loads and embeds nonsense, or fails deep in a request: check it first.
        verify_model_files(folder, "embedding model")
        config = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        self.name = str(folder)
        self.dimension = int(config["dimension"])
        self.max_tokens = int(config["max_tokens"])
        self.batch_size = max(1, int(batch_size))
        digest = _recorded_digest(folder / "SHA256SUMS", "model.onnx")
        self.identity = f"onnx-int8:{digest[:16]}" if digest else f"onnx:{folder.name}"
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        options = ort.SessionOptions()
        self.threads = threads or min(2, os.cpu_count() or 1)
        # One thread a run, and the same arithmetic every run: a text's vector never depends on
        # how many texts were encoded beside it.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # The CPU is shared with the reader and the web server: do not spin idle threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = int8.session(folder / "model.onnx", options)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._start_cache()
        # One tokenizer call at a time: a fast tokenizer's truncation state is shared (see above).
        self._tokenizer_lock = threading.Lock()
        self._pool = None
        self._pool_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batches = [order[first:first + self.batch_size] for first in range(0, len(order), self.batch_size)]

        def run(share: list[list[int]]) -> None:
            for batch in share:
                vectors[batch] = self._run([encodings[i] for i in batch])

        if self.threads <= 1 or len(batches) == 1:
            run(batches)
        else:
            # Interleaved shares of the length-sorted batches: each thread gets long and short.
            shares = [batches[k::self.threads] for k in range(self.threads)]
            list(self._executor().map(run, shares))
        return vectors

    def _executor(self):
        from concurrent.futures import ThreadPoolExecutor

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="encoder")
            return self._pool

    def _run(self, encodings) -> np.ndarray:
        # A text of no tokens (possible with a tokenizer that adds none) would be an all-masked row,
        # which the model loaded without its NaN guards (qa/int8.py) turns to NaN for the whole run:
        # it gets the zero vector that mean pooling over nothing gave.
        if any(not e.ids for e in encodings):
            vectors = np.zeros((len(encodings), self.dimension), dtype=np.float32)
            real = [row for row, e in enumerate(encodings) if e.ids]
            if real:
                vectors[real] = self._run([encodings[row] for row in real])
            return vectors
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        tokens = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        # Mean pooling over real tokens, then L2 normalisation: sentence-transformers' Pooling
        # (mean) and Normalize modules of this model.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._tokenizer_lock:
            self._tokenizer.no_truncation()
            try:
                encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
            finally:
                self._tokenizer.enable_truncation(self.max_tokens)
        return [len(e.ids) for e in encodings]


def _recorded_digest(sums: Path, name: str) -> str | None:
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, file = line.strip().partition("  ")
        if file.lstrip("*") == name:
            return digest.lower()
    return None


ENCODERS = ("auto", "onnx", "torch")


def make_encoder(settings) -> Encoder:
    """The encoder the `encoder` setting names: `auto` (the shipped int8 ONNX MiniLM when
    `model` is the bundled MiniLM, else torch), `onnx` (the shipped int8 ONNX MiniLM), `torch`
    (sentence-transformers float32 on `model`), or a folder holding an ONNX encoder."""
    from .errors import BadInput
    from .settings import default_model

    choice = settings.encoder
    if choice == "torch" or (choice == "auto" and os.path.realpath(settings.model) != os.path.realpath(default_model())):
        return SentenceTransformerEncoder(settings.model, batch_size=settings.batch_size)
    if choice in ("auto", "onnx"):
        if not (SHIPPED_ENCODER / "model.onnx").is_file():
            if choice == "onnx":
                raise BadInput("bad_encoder", f"no ONNX encoder in {SHIPPED_ENCODER}; build it with `python -m qa.training.encoder`")
            log.info("no ONNX encoder shipped; using sentence-transformers")
            return SentenceTransformerEncoder(settings.model, batch_size=settings.batch_size)
        return OnnxEncoder(SHIPPED_ENCODER, threads=settings.encoder_threads or None)
    if os.path.isdir(choice):
        return OnnxEncoder(choice, threads=settings.encoder_threads or None)
    raise BadInput("bad_encoder", f"QA_ENCODER={choice!r} is not auto, onnx, torch or a folder with an ONNX encoder")
