"""Backups and moves of an index: an export of the articles (JSONL, what `qa import` takes back),
a consistent copy of a SQLite + FAISS index folder, and a migration of a whole index, vectors
included, from one storage backend to another. None of them needs the embedding model."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from .backends import open_backend, open_stored
from .errors import BadInput
from .settings import Settings
from .store import remove_abandoned_partials

log = logging.getLogger(__name__)


def _settings(index: Settings | Path | str) -> Settings:
    # A folder alone names a SQLite + FAISS index, as before backends existed.
    if isinstance(index, Settings):
        return index
    return dataclasses.replace(Settings.from_env(), backend="sqlite", index_dir=Path(index))


def export_articles(index: Settings | Path, file: Path) -> int:
    """Write every article of the index (the settings' backend, or a SQLite + FAISS folder), exactly
    as stored and with its metadata, to `file`, one JSON object a line. Returns how many.

    The file appears under its name only when complete. JSON escapes every character beyond ASCII:
    a line separator inside a text (U+2028) then cannot split a line of the file.
    """
    file = Path(file)
    if file.is_dir():
        raise BadInput("bad_path", f"{file} is a folder; name the file to write")
    if not file.absolute().parent.is_dir():
        raise BadInput("bad_path", f"{file.absolute().parent}: no such folder")
    store = open_stored(_settings(index))
    remove_abandoned_partials(file)
    partial = file.with_name(f".{file.name}.partial-{os.getpid()}")
    count = 0
    try:
        with open(partial, "w", encoding="ascii") as handle:
            for record in store.export_rows():
                handle.write(json.dumps(record, ensure_ascii=True) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        store.close()
    log.info("exported %d articles to %s", count, file)
    return count


def backup_index(index: Settings | Path, target: Path) -> tuple[int, int]:
    """Copy the SQLite + FAISS index to the new folder `target`, consistently, without stopping the
    service (see `IndexStore.backup`). Returns (generation, articles). The copy is an index
    folder: QA_INDEX_DIR=target serves it."""
    settings = _settings(index)
    if settings.backend != "sqlite":
        raise BadInput("not_supported", "qa backup copies a SQLite + FAISS index folder; for Milvus use "
                       "`qa migrate sqlite:FOLDER` (vectors included), `qa export`, or Milvus's own backup tool")
    store = open_stored(settings)
    try:
        generation, articles = store.backup(Path(target))
    finally:
        store.close()
    log.info("backed up %d articles (generation %d) to %s", articles, generation, target)
    return generation, articles


def migrate_index(source: Settings, target: Settings) -> tuple[int, int]:
    """Copy the index `source` names into the empty index `target` names (another backend, or the
    same kind elsewhere): every article as stored, with its chunks, their offsets and their
    vectors carried over (no source file is read again, nothing is re-embedded). The target is
    built with the source's manifest (model, chunking), so an engine with the same settings opens
    it. Returns (articles, chunks)."""
    reader = open_stored(source, maintenance=False)
    try:
        manifest = dict(reader.manifest)
        writer = open_backend(target, manifest, maintenance=False)
        try:
            if writer.counts()[0]:
                raise BadInput("target_not_empty", "the target index already holds articles; migrate into an empty one")
            articles = chunks = 0
            for batch_articles, batch_chunks, vectors in reader.dump():
                writer.write(batch_articles, batch_chunks, vectors)
                articles += len(batch_articles)
                chunks += len(batch_chunks)
        finally:
            writer.close()
    finally:
        reader.close()
    log.info("migrated %d articles, %d chunks from %s to %s", articles, chunks, source.backend, target.backend)
    return articles, chunks
