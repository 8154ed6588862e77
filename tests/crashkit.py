"""Crash and concurrency harness, shared by tests/test_crash.py, tests/test_concurrency.py and
bench/soak.py (which runs the same with more kills and for longer).

Writers and servers run in child processes forked from a forkserver that has loaded the model
once (`tests/_preloaded.py`), so that a child starts in a fraction of a second and a kill costs
little. A writer child runs the `qa` command's own `main(["ingest", FILE])`; a server child runs
uvicorn over `create_app(Engine(...))`, as `qa serve` does.

Generated articles carry their version in every paragraph ("revision v7"), so that a passage of
one version beside a passage of another, or an answer whose offsets fit no version of its
article, shows a half-written article.
"""

from __future__ import annotations

import collections
import contextlib
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import httpx

from qa.postings import ANALYSIS, postings_of
from qa import Engine, Settings
from qa.readers import make_reader
from qa.store import WRITE_POINTS

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"

PLACES = ("Quorvex", "Brandalmoor", "Zentarine", "Velloquay", "Varnholt", "Pelgravia", "Torvanesk", "Ixmoorland",
          "Dunmaraq", "Olsterwick", "Kethrune", "Sabrevale")


def article_text(key: int, version: int) -> str:
    """A generated article of a few chunks' worth; every paragraph names its version."""
    place, mark = PLACES[key % len(PLACES)], f"v{version}"
    return (
        f"The {place} reservoir council met on Tuesday to approve revision {mark} of the regional water plan.\n\n"
        f"Engineers said the {place} reservoir now holds {400 + version} megalitres of water under revision {mark}, "
        f"after the spring rains filled the upper basin.\n\n"
        f"Residents of {place} were told that the figures of revision {mark} will be published in full next week, "
        f"and that the council will meet again in {2030 + version % 7}."
    )


def article_record(key: int, version: int) -> dict[str, str]:
    return {"id": f"gen-{key}", "text": article_text(key, version), "published": "2026-11-22", "source": "Crash Test"}


def question(key: int) -> str:
    return f"How many megalitres of water does the {PLACES[key % len(PLACES)]} reservoir hold?"


def settings_for(index_dir: Path, **overrides) -> Settings:
    return Settings.from_env(index_dir=Path(index_dir), corpus_dir=CORPUS, **overrides)


# -- child processes -------------------------------------------------------------------------------

_context = None


def context():
    """The forkserver context whose server has the model loaded (started on first use)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["tests._preloaded"])
    return _context


def _child_setup(index_dir: str, log_path: str, kill_at: str | None, trace: str | None, kill_after: float | None) -> None:
    os.environ["QA_INDEX_DIR"] = index_dir
    os.environ["QA_CORPUS_DIR"] = str(CORPUS)
    os.environ.pop("QA_TEST_FAIL_AT", None)
    if kill_at:
        os.environ["QA_TEST_KILL_AT"] = kill_at
    else:
        os.environ.pop("QA_TEST_KILL_AT", None)
    handle = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    if trace is None:
        return
    import qa.store

    original = qa.store.reached
    fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def traced(point: str) -> None:
        # Written before the point acts, and unbuffered: a kill at a point leaves it as the last line.
        os.write(fd, f"{point} {time.monotonic():.6f}\n".encode())
        if point == "begin" and kill_after is not None:
            # A SIGKILL at a random moment of the write, from a thread of the writer itself: it
            # lands wherever the writer is, inside SQLite or FAISS calls too.
            threading.Timer(kill_after, os.kill, (os.getpid(), signal.SIGKILL)).start()
        original(point)

    qa.store.reached = traced


def _ingest_child(index_dir: str, jsonl: str, log_path: str, kill_at: str | None, trace: str | None,
                  kill_after: float | None) -> None:
    import sys

    import qa.cli
    from tests._preloaded import ENCODER

    _child_setup(index_dir, log_path, kill_at, trace, kill_after)
    # The command's own code path, with the model this process was forked with.
    qa.cli._engine = lambda settings: Engine(settings, encoder=ENCODER, reader=make_reader("rules", ENCODER))
    sys.exit(qa.cli.main(["ingest", jsonl]))


def _server_child(index_dir: str, port: int, reader: str, log_path: str, kill_at: str | None,
                  trace: str | None, kill_after: float | None) -> None:
    import uvicorn

    from qa.api import create_app
    from tests._preloaded import ENCODER

    _child_setup(index_dir, log_path, kill_at, trace, kill_after)
    engine = Engine(Settings.from_env(), encoder=ENCODER, reader=make_reader(reader, ENCODER))
    uvicorn.run(create_app(engine), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real uvicorn server over an index folder, in a child process."""

    def __init__(self, index_dir: Path, work: Path, reader: str = "rules", kill_at: str | None = None,
                 trace: Path | None = None, name: str = "server"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"{name}-{self.port}.log"
        self.process = context().Process(
            target=_server_child,
            args=(str(index_dir), self.port, reader, str(self.log), kill_at, str(trace) if trace else None, None),
            daemon=True,
        )
        self.process.start()

    def wait_ready(self, timeout: float = 120.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"server exited ({self.process.exitcode}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"server not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)

    def stop(self) -> int | None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.join(30)
        if self.process.is_alive():
            self.kill()
        return self.process.exitcode


# -- the index after a crash -----------------------------------------------------------------------

def leftovers(index_dir: Path) -> list[str]:
    """Files a finished write does not leave: temporary files, vectors of another generation."""
    names = sorted(p.name for p in Path(index_dir).iterdir())
    vectors = [n for n in names if n.startswith("vectors-")]
    with contextlib.closing(sqlite3.connect(Path(index_dir) / "index.sqlite")) as db:
        generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
    return [n for n in vectors if n != f"vectors-{generation}.faiss"]


def inspect_index(index_dir: Path, encoder) -> dict[str, str]:
    """Open the index as a restarted service would, check it whole, and return {id: text}.

    Raises AssertionError naming what is wrong: SQLite's integrity check, the FTS5 index's own
    check, counts and ids of articles, chunks, keyword rows and vectors, the posting lists against
    lists built afresh from the chunks, every chunk's text
    against its article, and files left behind after the open.
    """
    engine = Engine(settings_for(index_dir), encoder=encoder, reader=make_reader("rules", encoder))
    try:
        with contextlib.closing(sqlite3.connect(Path(index_dir) / "index.sqlite", isolation_level=None)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed"
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")  # raises if not
            generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            articles = dict(db.execute("SELECT id, text FROM articles"))
            chunks = {row[0]: row[1:] for row in db.execute("SELECT id, article_id, start, end, text FROM chunks")}
            keyword_ids = {row[0] for row in db.execute("SELECT rowid FROM chunks_fts")}
            lists = {term: bytes(data) for term, data in db.execute("SELECT term, data FROM postings")}
            totals = json.loads(db.execute("SELECT value FROM meta WHERE key = 'postings'").fetchone()[0])
        left = leftovers(index_dir)
        assert not left, f"left behind after the open: {left}"
        vectors = faiss.read_index(str(Path(index_dir) / f"vectors-{generation}.faiss")) if generation else None
        vector_ids = set(faiss.vector_to_array(vectors.id_map).tolist()) if vectors is not None else set()
        assert set(chunks) == keyword_ids, f"chunks {len(chunks)} vs keyword rows {len(keyword_ids)}"
        assert set(chunks) == vector_ids, f"chunks {len(chunks)} vs vectors {len(vector_ids)}"
        assert {c[0] for c in chunks.values()} == set(articles), "articles without chunks, or chunks without articles"
        expected, chunk_count, words = postings_of((i, chunks[i][3]) for i in sorted(chunks))
        assert lists == {term: rows.tobytes() for term, rows in expected.items()}, "posting lists differ from the chunks'"
        assert totals == {"chunks": chunk_count, "words": words, "analysis": ANALYSIS}, f"posting totals {totals}"
        for chunk_id, (article_id, start, end, text) in chunks.items():
            assert articles[article_id][start:end] == text, f"chunk {chunk_id} does not match article {article_id}"
        health = engine.health()
        assert (health["articles"], health["chunks"]) == (len(articles), len(chunks))
        return articles
    finally:
        engine.close()


def seed_state(index_dir: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(Path(index_dir) / "index.sqlite")) as db:
        return dict(db.execute("SELECT id, text FROM articles"))


def apply(state: dict[str, str], change: dict[str, str | None]) -> dict[str, str]:
    after = dict(state)
    for article_id, text in change.items():
        if text is None:
            after.pop(article_id, None)
        else:
            after[article_id] = text
    return after


# -- kill points -----------------------------------------------------------------------------------

@dataclass
class KillReport:
    """What the kill points found. `lost`: acknowledged articles missing or changed after a
    reopen; `half`: interrupted writes neither wholly there nor wholly absent."""

    kills: int = 0
    reopened: int = 0
    lost: int = 0
    half: int = 0
    failures: list[str] = field(default_factory=list)
    phases: collections.Counter = field(default_factory=collections.Counter)  # (how, last point) -> kills
    outcomes: collections.Counter = field(default_factory=collections.Counter)  # "applied" / "absent"
    leftovers_cleaned: int = 0
    write_seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.kills} kills, {self.reopened} reopened, {self.lost} acknowledged lost, {self.half} half-visible, "
                f"outcomes {dict(self.outcomes)}, leftovers cleaned after {self.leftovers_cleaned}")


class KillRunner:
    """Writes in child processes, each killed at a named write point or at a seeded random moment;
    after each kill the index is reopened and checked against what was acknowledged."""

    def __init__(self, index_dir: Path, work: Path, encoder, seed: int):
        self.index_dir, self.work, self.encoder = Path(index_dir), Path(work), encoder
        self.rng = random.Random(seed)
        self.state = seed_state(index_dir)
        self.versions = collections.Counter()
        self.report = KillReport()
        self.step = 0

    def _batch(self) -> dict[str, dict[str, str]]:
        """2 or 3 articles: new ones and new versions of generated ones."""
        batch = {}
        for _ in range(self.rng.randint(2, 3)):
            key = self.rng.randrange(len(PLACES))
            self.versions[key] += 1
            record = article_record(key, self.versions[key] * 1000 + self.step)  # never repeats a text
            batch[record["id"]] = record
        return batch

    def _trace(self) -> Path:
        self.step += 1
        return self.work / f"trace-{self.step}"

    @staticmethod
    def _points(trace: Path) -> list[tuple[str, float]]:
        if not trace.exists():
            return []
        return [(p, float(t)) for p, t in (line.split() for line in trace.read_text().splitlines() if line.strip())]

    def calibrate(self) -> float:
        """One uninterrupted write: how long a write takes from `begin` to `cleaned`."""
        change = self._batch()
        code, points = self._cli(change, None, None)
        assert code == 0, f"uninterrupted ingest failed: {(self.work / 'child.log').read_text()[-2000:]}"
        self.state = apply(self.state, {k: r["text"] for k, r in change.items()})
        times = dict(points)
        self.report.write_seconds = times["cleaned"] - times["begin"]
        self._verify({}, "calibration", "cleaned")
        return self.report.write_seconds

    def _cli(self, change, kill_at, kill_after) -> tuple[int | None, list[tuple[str, float]]]:
        jsonl = self.work / f"batch-{self.step}.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in change.values()))
        trace = self._trace()
        child = context().Process(target=_ingest_child, args=(
            str(self.index_dir), str(jsonl), str(self.work / "child.log"), kill_at, str(trace), kill_after))
        child.start()
        child.join(120)
        return child.exitcode, self._points(trace)

    def cli_kill(self, kill_at: str | None = None, kill_after: float | None = None) -> None:
        """`qa ingest` of a batch in a child, killed at `kill_at` or `kill_after` seconds into the write."""
        change = self._batch()
        code, points = self._cli(change, kill_at, kill_after)
        pending = {k: r["text"] for k, r in change.items()}
        how = "cli-point" if kill_at else "cli-random"
        if code == 0:  # acknowledged: the timer fired after the write was over
            self.state = apply(self.state, pending)
            self._verify({}, how, "done")
            return
        assert code == -signal.SIGKILL, f"ingest child ended with {code}: {(self.work / 'child.log').read_text()[-2000:]}"
        self._verify(pending, how, points[-1][0] if points else "before-begin")

    def http_kill(self, kill_at: str | None = None, kill_after: float | None = None) -> None:
        """POST and DELETE /articles through a real server in a child, killed at `kill_at` (the
        first write dies there) or after `kill_after` seconds of sequential writes."""
        trace = self._trace()
        server = Server(self.index_dir, self.work, kill_at=kill_at, trace=trace, name="crash").wait_ready()
        pending: dict[str, str | None] = {}
        stop = threading.Event()

        def write() -> None:
            nonlocal pending
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    generated = [i for i in self.state if i.startswith("gen-")]
                    if generated and self.rng.random() < 0.3:
                        victim = self.rng.choice(generated)
                        pending = {victim: None}
                        response = client.delete(f"/articles/{victim}")
                    else:
                        change = self._batch()
                        pending = {k: r["text"] for k, r in change.items()}
                        response = client.post("/articles", json={"articles": list(change.values())})
                    if response.status_code not in (200, 201):
                        self.report.failures.append(f"write refused: {response.status_code} {response.text[:200]}")
                        return
                    self.state = apply(self.state, pending)  # acknowledged
                    pending = {}

        writer = threading.Thread(target=_run_quietly, args=(write,))
        writer.start()
        if kill_at:
            server.process.join(60)
        else:
            time.sleep(kill_after)
            server.kill()
        stop.set()
        writer.join(60)
        server.kill()
        points = self._points(trace)
        self._verify(pending, "http-point" if kill_at else "http-random", points[-1][0] if points else "before-begin")

    def _verify(self, pending: dict[str, str | None], how: str, phase: str) -> None:
        if how != "calibration":
            self.report.kills += 1
            self.report.phases[(how, phase)] += 1
        left = leftovers(self.index_dir)
        try:
            actual = inspect_index(self.index_dir, self.encoder)
        except AssertionError as error:
            self.report.failures.append(f"{how} at {phase}: {error}")
            raise
        self.report.reopened += how != "calibration"
        if left:
            self.report.leftovers_cleaned += 1
        applied = apply(self.state, pending)
        if actual == applied and pending:
            self.report.outcomes["applied"] += 1
        elif actual == self.state:
            self.report.outcomes["absent" if pending else "nothing pending"] += 1
        else:
            lost = [i for i, text in self.state.items() if actual.get(i) != text and applied.get(i) != actual.get(i)]
            self.report.lost += len(lost)
            self.report.half += 1 if not lost else 0
            self.report.failures.append(f"{how} at {phase}: index holds neither the acknowledged state nor it with "
                                        f"the interrupted write (lost {lost[:5]})")
        self.state = actual


def _run_quietly(function) -> None:
    # A write cut by the kill ends with a connection error: expected, and checked by _verify.
    with contextlib.suppress(httpx.HTTPError):
        function()


def run_kill_points(index_dir: Path, work: Path, encoder, kills: int, seed: int) -> KillReport:
    """`kills` kill points, seeded: named write points in turn (by `qa ingest` and through the
    server) and random moments spread over a write's measured length (and a little past it)."""
    runner = KillRunner(index_dir, work, encoder, seed)
    duration = runner.calibrate()
    points = list(WRITE_POINTS)
    for number in range(kills):
        kind = number % 10
        if kind < 5:
            runner.cli_kill(kill_at=points[number % len(points)])
        elif kind < 8:
            runner.cli_kill(kill_after=runner.rng.uniform(0, duration * 1.2))
        elif kind == 8:
            runner.http_kill(kill_at=points[(number // 10) % len(points)])
        else:
            runner.http_kill(kill_after=runner.rng.uniform(0.2, 1.5))
    return runner.report


# -- readers and a writer at once ------------------------------------------------------------------

@dataclass
class LoadReport:
    requests: int = 0
    server_errors: int = 0  # 5xx, and connections the server dropped without an answer
    bad_offsets: int = 0
    half_written: int = 0
    other_failures: list[str] = field(default_factory=list)
    writes: int = 0
    propagation_misses: int = 0
    propagation_ms: list[float] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    seconds: float = 0.0

    def figures(self) -> dict[str, object]:
        everything = [x for values in self.latencies.values() for x in values]

        def pct(values, q):
            return round(statistics.quantiles(values, n=100)[q - 1], 1) if len(values) >= 2 else None

        return {
            "seconds": round(self.seconds, 1), "requests": self.requests, "per_second": round(self.requests / self.seconds, 1),
            "5xx": self.server_errors, "bad_offsets": self.bad_offsets, "half_written": self.half_written,
            "writes": self.writes, "propagation_misses": self.propagation_misses,
            "propagation_p50_ms": pct(self.propagation_ms, 50), "p50_ms": pct(everything, 50), "p95_ms": pct(everything, 95),
            **{f"{kind}_p50_ms": pct(v, 50) for kind, v in sorted(self.latencies.items())},
            **{f"{kind}_p95_ms": pct(v, 95) for kind, v in sorted(self.latencies.items())},
            "failures": self.other_failures[:5],
        }


class History:
    """Every version each article has had, with when its write was sent and acknowledged: which
    versions a reader may see during a request."""

    def __init__(self, initial: dict[str, str]):
        self._lock = threading.Lock()
        # id -> [(text or None, sent, acknowledged or None)]
        self.versions: dict[str, list[list]] = {i: [[t, 0.0, 0.0]] for i, t in initial.items()}

    def sent(self, change: dict[str, str | None]) -> list[list]:
        now = time.monotonic()
        with self._lock:
            entries = [[text, now, None] for text in change.values()]
            for article_id, entry in zip(change, entries):
                self.versions.setdefault(article_id, [[None, 0.0, 0.0]]).append(entry)
            return entries

    @staticmethod
    def acknowledged(entries: list[list]) -> None:
        now = time.monotonic()
        for entry in entries:
            entry[2] = now

    def possible(self, article_id: str, began: float, ended: float) -> list[str | None]:
        """The versions that may be live at some moment of [began, ended]: sent by its end, and
        not yet replaced by an acknowledged later write at its start."""
        with self._lock:
            versions = list(self.versions.get(article_id, [[None, 0.0, 0.0]]))
        out = []
        for index, (text, sent, _) in enumerate(versions):
            if sent > ended:
                continue
            later = [v[2] for v in versions[index + 1:] if v[2] is not None and v[1] <= ended]
            if later and min(later) < began:
                continue
            out.append(text)
        return out


def _spans(kind: str, body: dict) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(article id, [(start, end, text)]) for every offset a response claims."""
    if kind == "ask":
        return [(a["citation"]["article_id"], [(a["citation"]["start"], a["citation"]["end"], a["text"]),
                                               (a["context"]["start"], a["context"]["end"], a["context"]["text"])])
                for a in body["answers"]]
    if kind == "search":
        return [(p["article_id"], [(p["start"], p["end"], p["text"])]) for p in body["results"]]
    return [(m["article_id"], [(m["start"], m["end"], m["text"])]) for m in body["matches"]]


def run_readers_writer(index_dir: Path, work: Path, seconds: float, seed: int, clients: int = 8,
                       reader: str = "auto") -> LoadReport:
    """A server with `clients` readers asking, searching, citing and fetching articles; one more
    client adding, replacing and deleting; a second server process on the same folder, asked for
    each change right after it is acknowledged."""
    report = LoadReport()
    history = History(seed_state(index_dir))
    main_server = Server(index_dir, work, reader=reader, name="main")
    second = Server(index_dir, work, reader="rules", name="second")
    main_server.wait_ready()
    second.wait_ready()
    stop = threading.Event()
    lock = threading.Lock()
    seed_ids = sorted(i for i in history.versions if not i.startswith("gen-"))

    def fail(kind: str, message: str) -> None:
        with lock:
            report.other_failures.append(f"{kind}: {message}")

    def check(kind: str, body: dict, began: float, ended: float) -> None:
        by_article: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        for article_id, spans in _spans(kind, body):
            by_article[article_id] += spans
        for article_id, spans in by_article.items():
            candidates = [t for t in history.possible(article_id, began, ended) if t is not None]
            fits_each = all(any(t[s:e] == text for t in candidates) for s, e, text in spans)
            fits_one = any(all(t[s:e] == text for s, e, text in spans) for t in candidates)
            with lock:
                if not fits_each:
                    report.bad_offsets += 1
                    report.other_failures.append(f"{kind}: offsets of {article_id} fit no version")
                elif not fits_one:
                    report.half_written += 1
                    report.other_failures.append(f"{kind}: {article_id} seen in two versions at once")

    def read(number: int) -> None:
        rng = random.Random(seed * 100 + number)
        with httpx.Client(base_url=main_server.url, timeout=120) as client:
            while not stop.is_set():
                key = rng.randrange(6)
                roll = rng.random()
                began = time.monotonic()
                kind = "ask" if roll < 0.4 else "search" if roll < 0.7 else "cite" if roll < 0.9 else "article"
                article_id = rng.choice([f"gen-{key}", *seed_ids[:1]])
                try:
                    if kind == "ask":
                        response = client.post("/ask", json={"question": question(key)})
                    elif kind == "search":
                        response = client.get("/search", params={"q": f"{PLACES[key]} reservoir water", "k": 5})
                    elif kind == "cite":
                        response = client.post("/cite", json={"text": f"the {PLACES[key]} reservoir council met on Tuesday"})
                    else:
                        response = client.get(f"/articles/{article_id}")
                except httpx.TransportError as error:
                    # The server dropped the connection instead of answering: a fault, as a 5xx is.
                    with lock:
                        report.requests += 1
                        report.server_errors += 1
                        report.other_failures.append(f"{kind}: connection dropped ({error})")
                    continue
                ended = time.monotonic()
                with lock:
                    report.requests += 1
                    report.latencies[kind].append((ended - began) * 1000)
                    if response.status_code >= 500:
                        report.server_errors += 1
                        report.other_failures.append(f"{kind}: {response.status_code} {response.text[:200]}")
                        continue
                if kind == "article":
                    possible = history.possible(article_id, began, ended)
                    if response.status_code == 404:
                        ok = None in possible
                    else:
                        ok = response.status_code == 200 and response.json()["text"] in possible
                    if not ok:
                        with lock:
                            report.half_written += 1
                            report.other_failures.append(f"article {article_id}: {response.status_code}, not a version live then")
                elif response.status_code != 200:
                    fail(kind, f"{response.status_code} {response.text[:200]}")
                else:
                    check(kind, response.json(), began, ended)

    def write() -> None:
        rng = random.Random(seed)
        version = 0
        with httpx.Client(base_url=main_server.url, timeout=120) as client, \
                httpx.Client(base_url=second.url, timeout=120) as other:
            while not stop.is_set():
                version += 1
                key = rng.randrange(6)
                article_id = f"gen-{key}"
                live = history.possible(article_id, time.monotonic(), time.monotonic())[-1] is not None
                try:
                    if live and rng.random() < 0.25:
                        change = {article_id: None}
                        entries = history.sent(change)
                        response = client.delete(f"/articles/{article_id}")
                    else:
                        record = article_record(key, version)
                        change = {article_id: record["text"]}
                        entries = history.sent(change)
                        response = client.post("/articles", json=record)
                except httpx.TransportError as error:
                    with lock:
                        report.server_errors += 1
                        report.other_failures.append(f"write: connection dropped ({error})")
                    continue
                if response.status_code >= 500:
                    with lock:
                        report.server_errors += 1
                        report.other_failures.append(f"write: {response.status_code} {response.text[:200]}")
                    continue
                if response.status_code not in (200, 201):
                    fail("write", f"{response.status_code} {response.text[:200]}")
                    continue
                history.acknowledged(entries)
                # The second process, right after the acknowledgement: its very next request.
                began = time.monotonic()
                seen = other.get(f"/articles/{article_id}")
                elapsed = (time.monotonic() - began) * 1000
                # And its search: the passages of the new version, or none of a deleted article.
                found = other.get("/search", params={"q": f"{PLACES[key]} reservoir council revision", "k": 5})
                passages = [p for p in found.json()["results"] if p["article_id"] == article_id] if found.status_code == 200 else None
                with lock:
                    report.writes += 1
                    report.propagation_ms.append(elapsed)
                    expected = change[article_id]
                    if expected is None:
                        ok = seen.status_code == 404 and passages == []
                    else:
                        ok = (seen.status_code == 200 and seen.json()["text"] == expected and bool(passages)
                              and all(expected[p["start"]:p["end"]] == p["text"] for p in passages))
                    if not ok:
                        report.propagation_misses += 1
                        report.other_failures.append(f"second process: {article_id} {seen.status_code}, "
                                                     f"{passages and len(passages)} passages, after the acknowledgement")
                time.sleep(rng.uniform(0.05, 0.3))

    threads = [threading.Thread(target=read, args=(n,)) for n in range(clients)] + [threading.Thread(target=write)]
    began = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(180)
        report.seconds = time.monotonic() - began
    finally:
        stop.set()
        main_server.stop()
        second.stop()
    return report
