"""Backups of an index: an export of the articles (JSONL, what `qa import` takes back) and a
consistent copy of the whole index folder, both taken while the service runs. Neither needs the
embedding model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .store import IndexStore, remove_abandoned_partials

log = logging.getLogger(__name__)


def export_articles(index_dir: Path, file: Path) -> int:
    """Write every article of the index at `index_dir`, exactly as stored and with its metadata,
    to `file`, one JSON object a line, from one snapshot. Returns how many.

    The file appears under its name only when complete. JSON escapes every character beyond ASCII:
    a line separator inside a text (U+2028) then cannot split a line of the file.
    """
    file = Path(file)
    store = IndexStore.open_stored(index_dir)
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


def backup_index(index_dir: Path, target: Path) -> tuple[int, int]:
    """Copy the index at `index_dir` to the new folder `target`, consistently, without stopping
    the service (see `IndexStore.backup`). Returns (generation, articles). The copy is an index
    folder: QA_INDEX_DIR=target serves it."""
    store = IndexStore.open_stored(index_dir)
    try:
        generation, articles = store.backup(Path(target))
    finally:
        store.close()
    log.info("backed up %d articles (generation %d) to %s", articles, generation, target)
    return generation, articles
