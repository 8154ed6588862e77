"""The Milvus backend: articles, chunks, dense vectors and BM25 in Milvus, so that several service
replicas can share one index on a Milvus cluster; Milvus Lite (a `.db` file) runs the same engine
in process on one machine.

Four collections, named `<prefix>_<kind>`:
- `meta`: what the index was built with (`manifest`), a write counter (`generation`), and the
  journal of a write in progress (`pending`).
- `articles`: one row per article, the switch of its current `version`, with the fields filters
  and passages need (published, source, a JSON summary of title and url).
- `texts`: each article's full record (text, title, url, excluded spans) as JSON, cut into pieces
  that fit a VARCHAR (65,535 bytes), keyed by article, version and piece.
- `chunks`: one row per chunk: its offsets, its text (analysed for Milvus's BM25 function, which
  fills a sparse vector), its dense vector, and its article's version, date and source (so that
  filters apply inside both searches).

Milvus has no transaction across rows. A write inserts the new version's pieces and chunks, then
switches each article's row to the new version (one upsert per article row: an article is always
whole, in its old version or its new one), then deletes the old version's rows. Readers keep only
chunks of their article's current version, so a half-done write shows nothing half-written; a
crash leaves a `pending` journal that the next open or write finishes. Unlike the SQLite backend,
a write of several articles can be seen half-applied (some articles new, some old) while it runs,
and writes must come from one process at a time (one writer per index; the service's replicas can
all read).

Milvus Lite allows one process per `.db` file; it runs as a child process whose log goes to
`.<name>.db.log` beside the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

with warnings.catch_warnings():
    # milvus-lite 2.5.1 imports pkg_resources, which warns that it is deprecated.
    warnings.simplefilter("ignore")
    from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from ..errors import BadInput, Busy, IndexMismatch, NotFound, Unavailable
from ..records import Article, ArticleListing, ArticleSummary, Chunk, Filters, SourceCount
from .base import Batch, StoreBackend, check_manifest

log = logging.getLogger(__name__)
# pymilvus logs every refused request with a traceback, and a warning per query iterator on Lite
# ("failed to get mvccTs"); the errors reach the user as `Unavailable`, with Milvus's reason.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

# A VARCHAR holds at most 65,535 bytes; a piece of 16,000 characters is at most 64,000 bytes.
VARCHAR_BYTES = 65_535
PIECE_CHARS = 16_000
ID_BYTES = 2_048  # an id is at most 512 characters, at most 4 bytes each
# What FTS5's "porter unicode61 remove_diacritics" does, in Milvus's analyser: words lowercased,
# accents folded, English stems; no stop words (the question's terms are chosen by qa.text).
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", "asciifolding", {"type": "stemmer", "language": "english"}]}
# The most hits one search returns: document frequencies above it are counted as this.
MOST_HITS = 16_384
ROWS_PER_INSERT = 1_000
CONNECT_SECONDS = 30.0  # how long to wait for a Milvus server to answer at all
LITE_START_SECONDS = 120.0  # how long Milvus Lite may take to listen on a busy machine
IDS_PER_EXPRESSION = 500
KINDS = ("meta", "articles", "texts", "chunks")
_UNUSED = [0.0, 0.0]  # Milvus wants a vector field in every collection; these rows have none


def literal(value: str) -> str:
    """A string literal of Milvus's filter expressions (double quotes, backslash escapes)."""
    return json.dumps(value, ensure_ascii=False)


def filter_expression(filters: Filters | None, id_field: str) -> str:
    """A Milvus filter that holds for the rows (articles or chunks) of the articles `filters` keep;
    "" when it keeps everything. Undated rows carry published "", which passes no date bound."""
    if filters is None or not filters.active:
        return ""
    clauses = []
    if filters.published_from:
        clauses.append(f"published >= {literal(filters.published_from)}")
    if filters.published_to:
        clauses.append(f'(published != "" and published <= {literal(filters.published_to)})')
    if filters.source is not None:
        clauses.append(f"(has_source == true and source == {literal(filters.source)})")
    if filters.article_ids:
        clauses.append(f"{id_field} in [{', '.join(literal(i) for i in filters.article_ids)}]")
    return " and ".join(clauses)


def _fits(text: str, limit: int = VARCHAR_BYTES) -> bool:
    return len(text) * 4 <= limit or len(text.encode("utf-8")) <= limit


def _clip(text: str, limit: int = VARCHAR_BYTES) -> str:
    """The longest prefix of `text` that fits `limit` bytes in UTF-8."""
    if _fits(text, limit):
        return text
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(literal(v) for v in values)}]"


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for first in range(0, len(items), size):
        yield items[first:first + size]


# -- Milvus Lite ------------------------------------------------------------------------------

_lite_lock = threading.Lock()
_lite_servers: dict[str, list] = {}  # path -> [server, users]


def _start_lite(path: Path) -> str:
    """Start (or share, within this process) the Milvus Lite server of `path`; its unix socket URI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from milvus_lite.server import Server

    if not re.fullmatch(r"[A-Za-z0-9.\-_]+", path.name) or len(path.name) > 36:
        raise BadInput("bad_setting", f"QA_MILVUS_URI={path}: a Milvus Lite file name has at most 36 letters, "
                       "digits, '.', '-' or '_' and ends in .db")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _lite_lock:
        entry = _lite_servers.get(key)
        if entry is None:
            server = Server(key)
            log_path = path.parent / f".{path.name}.log"
            started = _start_quietly(server, log_path) if server.init() else "failed"
            if started == "failed":
                server.stop()  # the lock is ours: released, and the server ended
                raise Unavailable("milvus_unavailable", f"Milvus Lite did not start on {path}; its log is {log_path}")
            if started == "locked":
                # Not server.stop(), which its __del__ also calls: it would remove the lock file
                # that the other process holds (and unlock a closed file). Pointed elsewhere.
                if server._lock_fd is not None:
                    server._lock_fd.close()
                    server._lock_fd = None
                server._lock_path = server._uds_path + ".never-created"
                raise Busy("busy", f"cannot open the Milvus Lite file {path}: another process has it open "
                           "(Milvus Lite allows one process per file; use a Milvus server for several)")
            entry = _lite_servers[key] = [server, 0]
        entry[1] += 1
        return entry[0].uds_path


def _start_quietly(server, log_path: Path) -> str:
    """`Server.start` of milvus-lite 2.5.1, with the server's own log sent to `log_path` rather
    than to our standard error (a CLI prints one line, not the engine's indexer log). Returns
    "started", "locked" (another process has the file) or "failed"."""
    import fcntl

    server._lock_fd = open(server._lock_path, "a")
    try:
        fcntl.lockf(server._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "locked"
    environment = {key: value for key, value in os.environ.items() if key not in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")}
    libraries = str(server._bin_path) + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    environment.update(LD_LIBRARY_PATH=libraries, DYLD_LIBRARY_PATH=libraries)
    with open(log_path, "ab") as log_file:
        server._p = subprocess.Popen(args=server.args, env=environment, cwd=str(server._work_dir),
                                     stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL)
    # milvus-lite waits 0.5 s and connects; on a busy machine the server listens later than that
    # (pymilvus then gives up at once), so wait for its socket, as long as the server runs.
    deadline = time.monotonic() + LITE_START_SECONDS
    while not os.path.exists(server._uds_path):
        if server._p.poll() is not None or time.monotonic() > deadline:
            return "failed"  # it exited (see the log), or never listened
        time.sleep(0.05)
    return "started"


def _release_lite(path: Path) -> None:
    key = str(path.resolve())
    with _lite_lock:
        entry = _lite_servers.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _lite_servers[key]
            entry[0].stop()  # releases the file lock: the server exits


def is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


# -- the store ---------------------------------------------------------------------------------


class MilvusStore(StoreBackend):
    """An index in Milvus (Lite or a server); see the module's docstring for the layout."""

    name = "milvus"
    keyword_index = "milvus bm25 standard lowercase asciifolding english"

    def __init__(self, uri: str, manifest: dict[str, object], token: str = "", prefix: str = "qa",
                 index_type: str = "auto", advisory: Iterable[str] = (), maintenance: bool = False):
        """Open (or create) the index at `uri` (a Milvus Lite `.db` file, or `http://host:19530`).

        As `IndexStore`: an index built with another `manifest` is refused with `IndexMismatch`
        (advisory keys only warn); `maintenance` opens an existing index for a rebuild or an export
        without checking the manifest.
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", prefix or ""):
            raise BadInput("bad_setting", f"QA_MILVUS_PREFIX={prefix!r}: letters, digits and '_' only, not a digit first")
        self.uri = uri
        self.manifest = {key: manifest[key] for key in sorted(manifest)}
        self.dimension = int(manifest["dimension"])
        self.advisory = frozenset(advisory)
        self.stale: dict[str, tuple[object, object]] = {}
        self.names = {kind: f"{prefix}_{kind}" for kind in KINDS}
        self.lite = is_lite(uri)
        kind = index_type.upper()
        if kind not in ("AUTO", "FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"):
            raise BadInput("bad_setting", f"QA_MILVUS_INDEX={index_type!r} is not auto, FLAT, IVF_FLAT, HNSW or AUTOINDEX")
        self.index_type = ("FLAT" if self.lite else "HNSW") if kind == "AUTO" else kind
        self._lite_path: Path | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._generation = 0
        # (generation, chunk count, term -> chunks holding it), for `document_frequencies`.
        self._frequencies: tuple[int, int, dict[str, int]] = (-1, 0, {})
        self._client = self._connect(uri, token)
        try:
            with self._errors():
                if maintenance:
                    if not self._client.has_collection(self.names["meta"]) or self._meta("manifest") is None:
                        raise NotFound("not_found", f"no index in Milvus at {self._where()}")
                else:
                    self._create_collections()
                    self._check_manifest()
                    self._recover()
                self._generation = int(self._meta("generation") or 0)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_stored(cls, uri: str, token: str = "", prefix: str = "qa", index_type: str = "auto",
                    maintenance: bool = True) -> "MilvusStore":
        """The existing index at `uri` with the manifest it was built with (no model needed)."""
        probe = cls(uri, {"dimension": 0}, token=token, prefix=prefix, index_type=index_type, maintenance=True)
        try:
            with probe._errors():
                manifest = json.loads(probe._meta("manifest"))
        finally:
            probe.close()
        return cls(uri, manifest, token=token, prefix=prefix, index_type=index_type, maintenance=maintenance)

    # -- connection ----------------------------------------------------------------------------

    def _connect(self, uri: str, token: str) -> MilvusClient:
        try:
            if self.lite:
                self._lite_path = Path(uri).expanduser().absolute()
                address = _start_lite(self._lite_path)
                return MilvusClient(uri=address, timeout=60)
            return MilvusClient(uri=uri, token=token or "", timeout=CONNECT_SECONDS)
        except MilvusException as error:
            self.close()
            raise Unavailable("milvus_unavailable", f"cannot reach Milvus at {self._where()}: {error.message}") from None

    def _where(self) -> str:
        # Never the token; a URI may carry user:password@ too.
        return re.sub(r"//[^/@]*@", "//", self.uri)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except MilvusException as error:
            raise Unavailable("milvus_failed", f"Milvus at {self._where()} refused a request: {error.message}") from None

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
            self._client = None
        if self._lite_path is not None:
            _release_lite(self._lite_path)
            self._lite_path = None

    # -- schema --------------------------------------------------------------------------------

    def _create_collections(self) -> None:
        client = self._client
        for kind in KINDS:
            if client.has_collection(self.names[kind]):
                continue
            schema = MilvusClient.create_schema(auto_id=kind == "chunks", enable_dynamic_field=False)
            index = client.prepare_index_params()
            if kind == "meta":
                schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
                schema.add_field("value", DataType.VARCHAR, max_length=VARCHAR_BYTES)
            elif kind == "articles":
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_BYTES)
                schema.add_field("version", DataType.INT64)
                self._add_filter_fields(schema)
                schema.add_field("summary", DataType.VARCHAR, max_length=VARCHAR_BYTES)
            elif kind == "texts":
                schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=ID_BYTES + 64)
                schema.add_field("article_id", DataType.VARCHAR, max_length=ID_BYTES)
                schema.add_field("version", DataType.INT64)
                schema.add_field("piece", DataType.INT64)
                schema.add_field("data", DataType.VARCHAR, max_length=VARCHAR_BYTES)
            else:
                schema.add_field("id", DataType.INT64, is_primary=True)
                schema.add_field("article_id", DataType.VARCHAR, max_length=ID_BYTES)
                schema.add_field("version", DataType.INT64)
                schema.add_field("start_offset", DataType.INT64)
                schema.add_field("end_offset", DataType.INT64)
                schema.add_field("partial", DataType.BOOL)
                schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_BYTES, enable_analyzer=True,
                                 analyzer_params=ANALYZER)
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
                self._add_filter_fields(schema)
                schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                             input_field_names=["text"], output_field_names=["sparse"]))
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
                params = {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else \
                    {"nlist": 1024} if self.index_type == "IVF_FLAT" else {}
                index.add_index("dense", index_type=self.index_type, metric_type="IP", params=params)
            if kind != "chunks":
                schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
                index.add_index("unused", index_type="FLAT", metric_type="L2")
            # Strong: a change is visible to the next request, whichever replica serves it.
            client.create_collection(self.names[kind], schema=schema, index_params=index, consistency_level="Strong")

    @staticmethod
    def _add_filter_fields(schema) -> None:
        # Milvus Lite has no nullable fields: "" stands for no date, has_source for a source.
        schema.add_field("published", DataType.VARCHAR, max_length=16)
        schema.add_field("source", DataType.VARCHAR, max_length=VARCHAR_BYTES)
        schema.add_field("has_source", DataType.BOOL)

    # -- meta, manifest, journal -----------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        rows = self._client.query(self.names["meta"], filter=f"key == {literal(key)}", output_fields=["value"])
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._client.upsert(self.names["meta"], [{"key": key, "value": value, "unused": _UNUSED}])

    def _check_manifest(self) -> None:
        stored = self._meta("manifest")
        if stored is None:
            self._set_meta("manifest", json.dumps(self.manifest))
            self._set_meta("generation", "0")
            return
        self.stale = check_manifest(json.loads(stored), self.manifest, self.advisory, f"Milvus at {self._where()}")

    @property
    def generation(self) -> int:
        return self._generation

    def _recover(self) -> None:
        """Finish a write that stopped half-way (a crash, a lost connection): for each article it
        touched, keep the version its row names and delete every other."""
        pending = self._meta("pending")
        if pending is None:
            return
        touched = json.loads(pending)["articles"]
        log.warning("finishing a write to %s that stopped half-way (%d articles)", self._where(), len(touched))
        heads = self._head_versions(touched)
        for article_id in touched:
            keep = heads.get(article_id)
            condition = f"article_id == {literal(article_id)}" + ("" if keep is None else f" and version != {keep}")
            self._client.delete(self.names["chunks"], filter=condition)
            self._client.delete(self.names["texts"], filter=condition)
        self._client.delete(self.names["meta"], filter='key == "pending"')

    # -- reads ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """One request's reads. Milvus has no snapshot: each read sees what is committed when it
        runs, and chunks of a version their article no longer names are left out. The write
        counter is read once, so that cached term counts follow other processes' writes."""
        if getattr(self._local, "depth", 0):
            yield
            return
        with self._errors():
            self._generation = int(self._meta("generation") or 0)
        self._local.depth = 1
        try:
            with self._errors():
                yield
        finally:
            self._local.depth = 0

    def _count(self, kind: str, expression: str = "") -> int:
        rows = self._client.query(self.names[kind], filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def counts(self) -> tuple[int, int]:
        with self._errors():
            return self._count("articles"), self._count("chunks")

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "milvus": "lite" if self.lite else "server"}

    def _all(self, kind: str, expression: str, fields: list[str]) -> list[dict]:
        """Every row `expression` matches (a query returns at most 16,384 rows at once)."""
        iterator = self._client.query_iterator(self.names[kind], batch_size=4096, filter=expression, output_fields=fields)
        rows = []
        try:
            while True:
                batch = iterator.next()
                if not batch:
                    return rows
                rows.extend(batch)
        finally:
            iterator.close()

    def _rows(self, kind: str, expression: str, fields: list[str]) -> list[dict]:
        """The rows `expression` matches: one query, or an iterator when they are too many for one."""
        rows = self._client.query(self.names[kind], filter=expression, output_fields=fields, limit=MOST_HITS)
        return rows if len(rows) < MOST_HITS else self._all(kind, expression, fields)

    def _heads(self, article_ids: Sequence[str], fields: list[str]) -> dict[str, dict]:
        found = {}
        unique = list(dict.fromkeys(article_ids))
        for group in _batches(unique, IDS_PER_EXPRESSION):
            for row in self._client.query(self.names["articles"], filter=_in("id", group), output_fields=["id", *fields]):
                found[row["id"]] = row
        return found

    def _head_versions(self, article_ids: Sequence[str]) -> dict[str, int]:
        return {i: row["version"] for i, row in self._heads(article_ids, ["version"]).items()}

    def _records(self, heads: dict[str, dict]) -> dict[str, dict]:
        """The full records (text, title, url, excluded, ingested_at) of articles at their versions."""
        pieces: dict[str, list[tuple[int, str]]] = {}
        ids = list(heads)
        for group in _batches(ids, IDS_PER_EXPRESSION):
            for row in self._rows("texts", _in("article_id", group), ["article_id", "version", "piece", "data"]):
                if heads[row["article_id"]]["version"] == row["version"]:
                    pieces.setdefault(row["article_id"], []).append((row["piece"], row["data"]))
        return {i: json.loads("".join(data for _, data in sorted(pieces[i]))) for i in ids if i in pieces}

    def _articles(self, article_ids: Sequence[str]) -> list[Article]:
        heads = self._heads(article_ids, ["version", "published"])
        records = self._records(heads)
        articles = []
        for article_id in sorted(records):
            record = records[article_id]
            articles.append(Article(article_id, record["text"], record["title"], heads[article_id]["published"] or None,
                                    record.get("source"), record.get("url"),
                                    excluded=tuple(tuple(span) for span in record["excluded"])))
        return articles

    def article(self, article_id: str) -> Article | None:
        with self._errors():
            found = self._articles([article_id])
        return found[0] if found else None

    def article_ids(self) -> list[str]:
        with self._errors():
            return sorted(row["id"] for row in self._all("articles", 'id != ""', ["id"]))

    def article_fields(self, article_ids: Iterable[str]) -> dict[str, tuple[str, str | None, str | None, str | None]]:
        with self._errors():
            heads = self._heads(list(article_ids), ["version", "published", "summary"])
            long = {i: h for i, h in heads.items() if not h["summary"]}
            records = self._records(long) if long else {}
        fields = {}
        for article_id, head in heads.items():
            summary = json.loads(head["summary"]) if head["summary"] else records.get(article_id)
            if summary is None:  # replaced meanwhile: its new pieces are read next time
                continue
            fields[article_id] = (summary["title"], head["published"] or None, summary.get("source"), summary.get("url"))
        return fields

    def list_articles(self, filters: Filters | None, limit: int, offset: int) -> ArticleListing:
        with self._errors():
            expression = filter_expression(filters, "id") or 'id != ""'
            rows = sorted(self._all("articles", expression, ["id", "published"]), key=lambda row: row["id"])
            rows.sort(key=lambda row: row["published"], reverse=True)  # stable: ties stay by id
            rows.sort(key=lambda row: row["published"] == "")  # undated last
            page = [row["id"] for row in rows[offset:offset + limit]]
            fields = self.article_fields(page)
            versions = self._head_versions(page)
            counted = Counter(
                row["article_id"] for row in (self._rows("chunks", _in("article_id", page), ["article_id", "version"]) if page else [])
                if versions.get(row["article_id"]) == row["version"]
            )
        summaries = tuple(ArticleSummary(i, *fields[i], counted[i]) for i in page if i in fields)
        return ArticleListing(len(rows), summaries)

    def sources(self) -> list[SourceCount]:
        with self._errors():
            rows = self._all("articles", "has_source == true", ["summary", "source"])
        counts = Counter(json.loads(row["summary"])["source"] if row["summary"] else row["source"] for row in rows)
        return [SourceCount(source, count) for source, count in sorted(counts.items(), key=lambda item: (item[0].casefold(), item[0]))]

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        if not chunk_ids:
            return {}
        with self._errors():
            ids = [int(i) for i in chunk_ids]
            rows = self._client.query(self.names["chunks"], filter=f"id in {ids}",
                                      output_fields=["id", "article_id", "version", "start_offset", "end_offset", "text", "partial"])
            versions = self._head_versions([row["article_id"] for row in rows])
            current = [row for row in rows if versions.get(row["article_id"]) == row["version"]]
            # A chunk longer than a VARCHAR keeps a clipped text for BM25: its own is the article's.
            partial = {row["article_id"] for row in current if row["partial"]}
            texts = {a.id: a.text for a in self._articles(sorted(partial))} if partial else {}
        found = {}
        for row in current:
            text = texts[row["article_id"]][row["start_offset"]:row["end_offset"]] if row["partial"] else row["text"]
            found[row["id"]] = Chunk(row["article_id"], row["start_offset"], row["end_offset"], text)
        return found

    def dense_chunks(self, vectors: np.ndarray, n: int, filters: Filters | None = None) -> list[list[tuple[int, float]]]:
        if len(vectors) == 0:
            return []
        params = {"metric_type": "IP", "params": {"ef": max(64, n)} if self.index_type == "HNSW" else {}}
        with self._errors():
            results = self._client.search(self.names["chunks"], data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors],
                                          anns_field="dense", limit=n, filter=filter_expression(filters, "article_id"),
                                          search_params=params, output_fields=[])
        return [[(int(hit["id"]), float(hit["distance"])) for hit in hits] for hits in results]

    def keyword_chunks(self, terms: Sequence[str], n: int, filters: Filters | None = None) -> list[tuple[int, float]]:
        terms = [t for t in dict.fromkeys(terms) if t]
        if not terms:
            return []
        with self._errors():
            results = self._client.search(self.names["chunks"], data=[" ".join(terms)], anns_field="sparse", limit=n,
                                          filter=filter_expression(filters, "article_id"),
                                          search_params={"metric_type": "BM25"}, output_fields=[])
        return [(int(hit["id"]), float(hit["distance"])) for hit in results[0]]

    def hybrid_chunks(self, vectors: np.ndarray, term_lists: Sequence[Sequence[str]], n: int, filters: Filters | None,
                      ranker: str, keyword_weight: float, candidates: int, rrf_k: int) -> list[list[tuple[int, float]]]:
        """Milvus's own fusion (`hybrid_search`) of the dense and the BM25 search, one call per
        query: reciprocal ranks (`ranker` "hybrid-rrf") or weighted normalised scores
        ("hybrid-weighted", BM25 at `keyword_weight`). Measured against ours in docs/measurements.md."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        expression = filter_expression(filters, "article_id")
        params = {"metric_type": "IP", "params": {"ef": max(64, candidates)} if self.index_type == "HNSW" else {}}
        results = []
        with self._errors():
            for vector, terms in zip(vectors, term_lists):
                requests = [AnnSearchRequest(data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="dense",
                                             param=params, limit=candidates, expr=expression)]
                text = " ".join(t for t in dict.fromkeys(terms) if t)
                if text:
                    requests.append(AnnSearchRequest(data=[text], anns_field="sparse", param={"metric_type": "BM25"},
                                                     limit=candidates, expr=expression))
                # A question with no keyword term has the dense search alone: one weight.
                weights = (1 - keyword_weight, keyword_weight)[:len(requests)]
                fusion = RRFRanker(rrf_k) if ranker == "hybrid-rrf" else WeightedRanker(*weights)
                hits = self._client.hybrid_search(self.names["chunks"], requests, ranker=fusion, limit=n, output_fields=[])
                results.append([(int(hit["id"]), float(hit["distance"])) for hit in hits[0]])
        return results

    def cosines(self, vector: np.ndarray, chunk_ids: Sequence[int]) -> dict[int, float]:
        if not chunk_ids:
            return {}
        with self._errors():
            rows = self._client.query(self.names["chunks"], filter=f"id in {[int(i) for i in chunk_ids]}", output_fields=["id", "dense"])
        return {int(row["id"]): float(np.asarray(row["dense"], dtype=np.float32) @ vector) for row in rows}

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """As the SQLite backend's: how many chunks hold each term, as BM25 analyses it (a one-term
        BM25 search counts its hits, at most 16,384), cached until the next write."""
        generation, total, known = self._frequencies
        with self._errors():
            if generation != self._generation:
                total = self._count("chunks")
                known = {}
                self._frequencies = (self._generation, total, known)
            counts = {}
            for term in dict.fromkeys(t for t in terms if t):
                if term not in known:
                    if len(known) >= 50_000:  # a bound on memory for a long-running service
                        known.clear()
                    hits = self._client.search(self.names["chunks"], data=[term], anns_field="sparse", limit=MOST_HITS,
                                               search_params={"metric_type": "BM25"}, output_fields=[])
                    known[term] = len(hits[0])
                counts[term] = known[term]
        return counts, total

    # -- writes --------------------------------------------------------------------------------

    def write(self, articles: Sequence[Article], chunks: Sequence[Chunk], vectors: np.ndarray,
              delete: Iterable[str] = ()) -> tuple[list[str], list[str], list[str]]:
        """Add or replace `articles` and delete `delete`: each article switches whole from its old
        version to its new one (see the module's docstring for what a crash leaves)."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        ids = [a.id for a in articles]
        wanted_gone = [i for i in delete if i not in ids]
        with self._write_lock, self._errors():
            self._recover()
            present = set(self._head_versions(ids + wanted_gone))
            gone = [i for i in wanted_gone if i in present]
            version = time.time_ns()
            self._set_meta("pending", json.dumps({"version": version, "articles": ids + gone}))
            self._insert_articles(articles, chunks, vectors, version)
            for group in _batches(gone, IDS_PER_EXPRESSION):
                self._client.delete(self.names["articles"], filter=_in("id", group))
            for group in _batches(ids + gone, IDS_PER_EXPRESSION):
                old = f"{_in('article_id', group)} and version != {version}"
                self._client.delete(self.names["chunks"], filter=old)
                self._client.delete(self.names["texts"], filter=old)
            self._generation = int(self._meta("generation") or 0) + 1
            self._set_meta("generation", str(self._generation))
            self._client.delete(self.names["meta"], filter='key == "pending"')
        return [i for i in ids if i not in present], [i for i in ids if i in present], gone

    def _insert_articles(self, articles: Sequence[Article], chunks: Sequence[Chunk], vectors: np.ndarray, version: int) -> None:
        """The new version's pieces and chunks, then each article's row switched to it."""
        now = time.time()
        pieces, heads = [], []
        for article in articles:
            record = json.dumps({"text": article.text, "title": article.title, "source": article.source, "url": article.url,
                                 "excluded": [list(span) for span in article.excluded], "ingested_at": now}, ensure_ascii=False)
            for number, first in enumerate(range(0, len(record), PIECE_CHARS)):
                pieces.append({"key": f"{version}:{number}:{article.id}", "article_id": article.id, "version": version,
                               "piece": number, "data": record[first:first + PIECE_CHARS], "unused": _UNUSED})
            summary = json.dumps({"title": article.title, "source": article.source, "url": article.url}, ensure_ascii=False)
            heads.append({"id": article.id, "version": version, "summary": summary if _fits(summary) else "",
                          "unused": _UNUSED, **self._filter_fields(article)})
        by_id = {a.id: a for a in articles}
        rows = []
        for chunk, vector in zip(chunks, vectors):
            partial = not _fits(chunk.text)
            rows.append({"article_id": chunk.article_id, "version": version, "start_offset": chunk.start,
                         "end_offset": chunk.end, "partial": partial, "text": _clip(chunk.text),
                         "dense": np.asarray(vector, dtype=np.float32).tolist(), **self._filter_fields(by_id[chunk.article_id])})
        for group in _batches(pieces, 50):  # up to 64 kB each
            self._client.insert(self.names["texts"], list(group))
        for group in _batches(rows, ROWS_PER_INSERT):
            self._client.insert(self.names["chunks"], list(group))
        for group in _batches(heads, ROWS_PER_INSERT):
            self._client.upsert(self.names["articles"], list(group))

    @staticmethod
    def _filter_fields(article: Article) -> dict[str, object]:
        return {"published": article.published or "", "source": _clip(article.source or ""),
                "has_source": article.source is not None}

    def rebuild(self, remake: Callable[[list[Article]], Batch]) -> int:
        """Re-cut and re-embed every article (`remake`) and take up the new manifest. A new vector
        size needs a new chunks collection: searches find nothing until the rebuild is written."""
        with self._errors():
            stored = [article for batch, _, _ in self._dump(with_vectors=False) for article in batch]
        articles, chunks, vectors = remake(stored)
        with self._errors():
            built = json.loads(self._meta("manifest") or "{}")
            if built.get("dimension") != self.manifest["dimension"]:
                self._client.drop_collection(self.names["chunks"])
                self._create_collections()
        kept = {a.id for a in articles}
        self.write(articles, chunks, vectors, delete=[a.id for a in stored if a.id not in kept])
        with self._errors():
            self._set_meta("manifest", json.dumps(self.manifest))
        self.stale = {}
        return len(articles)

    # -- moving and keeping --------------------------------------------------------------------

    def export_rows(self) -> Iterator[dict[str, str]]:
        for articles, _, _ in self._dump(with_vectors=False):
            for a in articles:
                record = {"id": a.id, "text": a.text, "title": a.title, "published": a.published, "source": a.source, "url": a.url}
                yield {key: value for key, value in record.items() if value is not None}

    def dump(self, batch_articles: int = 200) -> Iterator[Batch]:
        return self._dump(batch_articles)

    def _dump(self, batch_articles: int = 200, with_vectors: bool = True) -> Iterator[Batch]:
        with self._errors():
            ids = self.article_ids()
            for group in _batches(ids, batch_articles):
                articles = self._articles(group)
                if not with_vectors:
                    yield articles, [], np.zeros((0, self.dimension), dtype=np.float32)
                    continue
                versions = self._head_versions(group)
                texts = {a.id: a.text for a in articles}
                rows = [row for row in self._rows("chunks", _in("article_id", group),
                                                 ["article_id", "version", "start_offset", "end_offset", "dense"])
                        if versions.get(row["article_id"]) == row["version"]]
                rows.sort(key=lambda row: (row["article_id"], row["start_offset"]))
                chunks = [Chunk(r["article_id"], r["start_offset"], r["end_offset"], texts[r["article_id"]][r["start_offset"]:r["end_offset"]])
                          for r in rows]
                vectors = np.asarray([r["dense"] for r in rows], dtype=np.float32).reshape(len(rows), self.dimension)
                yield articles, chunks, vectors
