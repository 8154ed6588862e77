"""Which storage backend an engine opens: `QA_BACKEND` (`sqlite`, the default, or `milvus`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from ..errors import BadInput
from ..settings import Settings
from ..vectors import VectorConfig
from .base import StoreBackend

BACKENDS = ("sqlite", "milvus")


def milvus_uri(settings: Settings) -> str:
    """`QA_MILVUS_URI`, or by default a Milvus Lite file in the index folder."""
    return settings.milvus_uri or str(Path(settings.index_dir) / "milvus.db")


def open_backend(settings: Settings, manifest: dict[str, object], advisory: Iterable[str] = (),
                 maintenance: bool = False) -> StoreBackend:
    """Open (or create) the index the settings name, for an engine that writes what `manifest`
    says. `maintenance` opens it for a rebuild or an export (see `IndexStore`)."""
    kind = _backend_class(settings.backend)
    # The keyword index is the backend's own, whatever the caller assumed.
    manifest = {**manifest, "keyword_index": kind.keyword_index}
    if kind.name == "sqlite":
        return kind(settings.index_dir, manifest, advisory=advisory, maintenance=maintenance,
                    vector_config=VectorConfig.from_settings(settings), keyword_search=settings.keyword_search)
    return kind(milvus_uri(settings), manifest, token=settings.milvus_token, prefix=settings.milvus_prefix,
                index_type=settings.milvus_index, advisory=advisory, maintenance=maintenance)


def open_stored(settings: Settings, maintenance: bool = True) -> StoreBackend:
    """The existing index the settings name, with the manifest it was built with: no model is
    needed to export, back up or migrate it. Raises `NotFound` when there is none."""
    kind = _backend_class(settings.backend)
    if kind.name == "sqlite":
        store = kind.open_stored(settings.index_dir)
        if maintenance:
            return store
        manifest = store.manifest
        store.close()
        return kind(settings.index_dir, manifest, vector_config=VectorConfig.from_settings(settings),
                    keyword_search=settings.keyword_search)
    return kind.open_stored(milvus_uri(settings), token=settings.milvus_token, prefix=settings.milvus_prefix,
                            index_type=settings.milvus_index, maintenance=maintenance)


def with_backend(settings: Settings, spec: str) -> Settings:
    """The settings of another index, named as `sqlite:FOLDER`, `milvus:FILE.db` or
    `milvus:http://host:19530` (for `qa migrate`)."""
    kind, _, where = spec.partition(":")
    if kind not in BACKENDS or not where:
        raise BadInput("bad_target", f"{spec!r} is not sqlite:FOLDER, milvus:FILE.db or milvus:http://HOST:19530")
    if kind == "sqlite":
        return dataclasses.replace(settings, backend="sqlite", index_dir=Path(where))
    return dataclasses.replace(settings, backend="milvus", milvus_uri=where)


def _backend_class(name: str):
    if name == "sqlite":
        from .sqlite import SQLiteFaissStore

        return SQLiteFaissStore
    if name == "milvus":
        try:
            from .milvus import MilvusStore
        except ImportError as error:
            raise BadInput("bad_setting", f"QA_BACKEND=milvus needs the milvus extra: pip install -e '.[milvus]' ({error})") from None
        return MilvusStore
    raise BadInput("bad_setting", f"QA_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
