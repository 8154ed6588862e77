"""A million real text chunks on one machine: build once (resumable), then measure.

The corpus: every real article of `../shared/data/qa-train/` and the SQuAD parts (the dev part's
two articles and the five seed news articles first, so that their questions can be asked at any
size), then articles recombined from those texts' sentences (3 to 7 paragraphs of 3 to 6
sentences drawn with a seeded generator). Everything is cut by the service's own chunker and every
chunk is embedded for real by the int8 encoder.

Stages, each resumable, all state in the cache folder (default `bench/.cache/million`, gitignored;
`--cache` or QA_BENCH_CACHE to move it):

    plan      which articles go in which shard (2,000 articles, ~9k chunks each) until >= --chunks
    embed     each shard's chunk vectors saved as shard-NNNNN.npy (written whole, then renamed:
              the file is the checkpoint); a killed run carries on with the next missing shard.
              `--workers 2 --worker 1` lets two processes share the shards, one core each
    index     the service's index (SQLite, FTS5, vectors) of the first --size chunks' shards
    measure   build time, size on disk, resident memory, search and ask p50/p95, dev-question
              recall, recall@10 of the approximate index against exact

    nice -n 19 .venv/bin/python bench/million.py embed            # hours; run it under nohup
    .venv/bin/python bench/million.py status
    .venv/bin/python bench/million.py measure --size 200000        # indexes what is embedded, then measures
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from qa.articles import analyse, read_paths  # noqa: E402
from qa.chunking import ChunkingConfig, chunk_articles  # noqa: E402
from qa.records import Article  # noqa: E402
from qa.squad import squad_articles  # noqa: E402
from qa.text import split_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEV = [ROOT / "data" / "squad" / "dev-v2.0-part.json"]
REAL = [SHARED / "squad" / "train-v1.1-part.json", SHARED / "squad" / "train-v2.0-part.json",
        *sorted((SHARED / "qa-train").glob("*.json"))]
SHARD_ARTICLES = 2000
SEED = 13


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


# -- the corpus ----------------------------------------------------------------------------------

class Corpus:
    """Article number -> Article, the same on every run (real articles, then recombined ones)."""

    def __init__(self) -> None:
        from qa.evaluate import load_squad

        self.real: list[Article] = []
        seen_ids: set[str] = set()
        seen_paragraphs: set[str] = set()
        for path in DEV:
            for article in load_squad(path)[0]:  # as `qa eval` indexes them: gold offsets hold
                self._add(article, seen_ids)
                seen_paragraphs.update(article.text.split("\n\n"))
        for article in read_paths([ROOT / "corpus"]):
            self._add(article, seen_ids)
        for path in REAL:
            for number, (title, paragraphs) in enumerate(squad_articles(path)):
                fresh = [p for p in dict.fromkeys(paragraphs) if p not in seen_paragraphs]
                seen_paragraphs.update(fresh)
                if fresh:
                    name = re.sub(r"[^\w.\-]", "_", f"{path.stem}-{title or number}")[:200]
                    self._add(Article(id=name, text="\n\n".join(fresh), title=(title or name).replace("_", " ")), seen_ids)
        texts = sorted(seen_paragraphs) + [a.text for a in read_paths([ROOT / "corpus"])]
        self.sentences = sorted({t[s:e] for t in texts for s, e in split_sentences(t) if 30 <= e - s <= 500})

    def _add(self, article: Article, seen: set[str]) -> None:
        if article.id not in seen:
            seen.add(article.id)
            self.real.append(analyse(article))

    def article(self, number: int) -> Article:
        if number < len(self.real):
            return self.real[number]
        rng = random.Random(SEED * 1_000_003 + number)
        paragraphs = [" ".join(rng.choice(self.sentences) for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(3, 7))]
        text = "\n\n".join(paragraphs)
        return analyse(Article(id=f"mix-{number:07d}", text=text, title=paragraphs[0].split(". ")[0][:120]))

    def articles(self, first: int, count: int) -> list[Article]:
        return [self.article(n) for n in range(first, first + count)]


def chunks_of(articles, encoder):
    return chunk_articles(articles, encoder.count_tokens, ChunkingConfig(200, 1))


def shard_texts(cache: Path, shard: dict, corpus: Corpus, encoder) -> list[str]:
    """The chunk texts of a shard, cut once and kept (gzipped JSON) for the later stages."""
    path = cache / "texts" / f"shard-{shard['shard']:05d}.json.gz"
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    texts = [c.text for c in chunks_of(corpus.articles(shard["first_article"], shard["articles"]), encoder)]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".tmp{os.getpid()}")
    with gzip.open(temporary, "wt", encoding="utf-8") as handle:
        json.dump(texts, handle)
    os.replace(temporary, path)
    return texts


# -- stages --------------------------------------------------------------------------------------

def load_plan(cache: Path) -> dict:
    path = cache / "plan.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_json(path: Path, value) -> None:
    temporary = path.with_name(path.name + f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)


def plan(cache: Path, target: int, encoder, corpus: Corpus) -> dict:
    """Shards of SHARD_ARTICLES articles with their chunk counts, until `target` chunks."""
    state = load_plan(cache) or {"shards": [], "real_articles": len(corpus.real), "seed": SEED}
    total = sum(s["chunks"] for s in state["shards"])
    while total < target:
        number = len(state["shards"])
        shard = {"shard": number, "first_article": number * SHARD_ARTICLES, "articles": SHARD_ARTICLES}
        chunks = shard_texts(cache, shard, corpus, encoder)
        state["shards"].append({**shard, "chunks": len(chunks)})
        total += len(chunks)
        write_json(cache / "plan.json", state)
        if number % 10 == 0:
            log(f"plan: {number + 1} shards, {total:,} chunks")
    state["planned_chunks"] = total
    write_json(cache / "plan.json", state)
    return state


def shard_path(cache: Path, number: int) -> Path:
    return cache / "vectors" / f"shard-{number:05d}.npy"


def embed(cache: Path, encoder, corpus: Corpus, worker: int, workers: int, first_shard: int = 0) -> None:
    """Embed every planned shard from `first_shard` on that has no vector file yet (this
    worker's share: the shards whose number is `worker` modulo `workers`)."""
    state = load_plan(cache)
    (cache / "vectors").mkdir(parents=True, exist_ok=True)
    for shard in state["shards"]:
        number = shard["shard"]
        path = shard_path(cache, number)
        if number < first_shard or number % workers != worker or path.exists():
            continue
        began = time.perf_counter()
        chunks = shard_texts(cache, shard, corpus, encoder)
        if len(chunks) != shard["chunks"]:
            raise SystemExit(f"shard {number}: {len(chunks)} chunks where the plan says {shard['chunks']}; "
                             "the corpus or the chunker changed: start a new cache")
        vectors = encoder.encode(chunks)
        temporary = path.with_name(path.name + f".tmp{os.getpid()}.npy")
        np.save(temporary, vectors.astype(np.float32))
        os.replace(temporary, path)
        seconds = time.perf_counter() - began
        with open(cache / "embed.log.jsonl", "a") as handle:
            handle.write(json.dumps({"shard": number, "chunks": len(chunks), "seconds": round(seconds, 2),
                                     "worker": worker, "at": time.time()}) + "\n")
        done = sum(shard_path(cache, s["shard"]).exists() for s in state["shards"])
        log(f"shard {number}: {len(chunks)} chunks in {seconds:.0f} s ({len(chunks) / seconds:.1f}/s); "
            f"{done}/{len(state['shards'])} shards done")


def status(cache: Path) -> dict:
    state = load_plan(cache)
    shards = state.get("shards", [])
    done = [s for s in shards if shard_path(cache, s["shard"]).exists()]
    prefix = 0
    for s in shards:
        if not shard_path(cache, s["shard"]).exists():
            break
        prefix += s["chunks"]
    seconds = chunks = 0
    if (cache / "embed.log.jsonl").is_file():
        for line in (cache / "embed.log.jsonl").read_text().splitlines():
            record = json.loads(line)
            seconds += record["seconds"]
            chunks += record["chunks"]
    return {"planned_shards": len(shards), "planned_chunks": sum(s["chunks"] for s in shards),
            "embedded_shards": len(done), "embedded_chunks": sum(s["chunks"] for s in done),
            "contiguous_chunks": prefix, "embed_seconds": round(seconds), "chunks_per_core_second": round(chunks / seconds, 1) if seconds else None}


def shards_for(cache: Path, size: int) -> list[dict]:
    """The first shards holding at least `size` chunks, all embedded."""
    chosen, total = [], 0
    for shard in load_plan(cache)["shards"]:
        if total >= size:
            break
        if not shard_path(cache, shard["shard"]).exists():
            raise SystemExit(f"only {total:,} chunks are embedded in order; run `embed` or ask for a smaller --size")
        chosen.append(shard)
        total += shard["chunks"]
    return chosen


def build_index(cache: Path, size: int, encoder, corpus: Corpus, settings_overrides: dict) -> Path:
    """The service's index of the first shards (>= `size` chunks), built once per size."""
    from qa.engine import ADVISORY, index_manifest
    from qa.vectors import VectorConfig
    from qa.settings import Settings
    from qa.store import IndexStore

    shards = shards_for(cache, size)
    total = sum(s["chunks"] for s in shards)
    directory = cache / f"index-{total}"
    done = directory / "built.json"
    if done.is_file():
        # An index built before keyword search had posting lists: add them from its chunks.
        store = IndexStore.open_stored(directory)
        began = time.perf_counter()
        if store.add_postings(progress=lambda n: log(f"posting lists: {n:,} chunks read")):
            built = json.loads(done.read_text())
            built["postings_seconds"] = round(time.perf_counter() - began, 1)
            write_json(done, built)
            log(f"posting lists added in {built['postings_seconds']} s")
        store.close()
        return directory
    settings = Settings.from_env(index_dir=directory, **settings_overrides)
    began = time.perf_counter()
    store = IndexStore(directory, index_manifest(encoder, ChunkingConfig(200, 1)), advisory=ADVISORY,
                       vector_config=VectorConfig.from_settings(settings))
    if store.counts()[1]:
        raise SystemExit(f"{directory} holds a partial index from an interrupted build; remove it and run again")
    # A few large writes: every write saves the whole next generation of the vector index.
    batch_articles, batch_chunks, batch_vectors = [], [], []
    for number, shard in enumerate(shards):
        articles = corpus.articles(shard["first_article"], shard["articles"])
        batch_articles += articles
        batch_chunks += chunks_of(articles, encoder)
        batch_vectors.append(np.load(shard_path(cache, shard["shard"])))
        if len(batch_chunks) >= 250_000 or number == len(shards) - 1:
            store.write(batch_articles, batch_chunks, np.concatenate(batch_vectors))
            log(f"index: {store.counts()[1]:,} chunks written")
            batch_articles, batch_chunks, batch_vectors = [], [], []
    store.close()
    write_json(done, {"chunks": total, "seconds": round(time.perf_counter() - began, 1)})
    return directory


def exact_neighbours(cache: Path, size: int, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k positions (0-based, in index order) over the first shards' vectors."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    offset = 0
    for shard in shards_for(cache, size):
        vectors = np.load(shard_path(cache, shard["shard"]))
        scores = queries @ vectors.T
        ids = np.broadcast_to(np.arange(offset, offset + len(vectors)), scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
        offset += len(vectors)
    return best_ids


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def measure(cache: Path, size: int, questions_limit: int, settings_overrides: dict) -> dict:
    from qa import Engine, Settings
    from qa import vectors as vector_index
    from qa.evaluate import _holds_answer, load_news, load_squad

    began = time.perf_counter()
    encoder_holder = {}
    from qa.embedding import make_encoder

    settings = Settings.from_env(**settings_overrides)
    encoder = encoder_holder["encoder"] = make_encoder(settings)
    corpus = Corpus()
    directory = build_index(cache, size, encoder, corpus, settings_overrides)
    built = json.loads((directory / "built.json").read_text())
    engine = Engine(Settings.from_env(index_dir=directory, **settings_overrides), encoder=encoder)
    opened = time.perf_counter() - began
    _, squad_questions = load_squad(DEV[0])
    news_questions = load_news(ROOT / "data" / "news_dev.jsonl")
    questions = [q for q in squad_questions if q.answers][:questions_limit] + [q for q in news_questions if q.answers]
    search_times, ask_times, top1, top5 = [], [], [], []
    for question in questions:
        encoder.forget_queries()
        start = time.perf_counter()
        passages = engine.search(question.text, 5)
        search_times.append(time.perf_counter() - start)
        top1.append(any(_holds_answer(p, question) for p in passages[:1]))
        top5.append(any(_holds_answer(p, question) for p in passages[:5]))
    for question in questions[: max(20, questions_limit // 4)]:
        encoder.forget_queries()
        start = time.perf_counter()
        engine.ask(question.text)
        ask_times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current_rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    # Recall@10 of the index the service searches against exact search over the same vectors.
    query_vectors = encoder.encode([q.text for q in questions])
    with engine.store.reading():
        found = engine.store.closest_chunks(query_vectors, 10)
        first_id = engine.store._db.execute("SELECT MIN(id) FROM chunks").fetchone()[0]
        kind = vector_index.kind(engine.store._current()[1])
        # Where a search's time goes: the dense search and the keyword search alone.
        dense_times, keyword_times = [], []
        for question, vector in zip(questions, query_vectors):
            start = time.perf_counter()
            engine.store.closest_chunks(vector[None, :], settings.candidates)
            dense_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            engine.store.keyword_chunks(engine.retriever.searchable_terms(question.text), settings.candidates)
            keyword_times.append(time.perf_counter() - start)
    exact = exact_neighbours(cache, size, query_vectors, 10) + first_id
    recall = np.mean([len({cid for cid, _ in got} & set(map(int, want))) / 10 for got, want in zip(found, exact)])
    disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    report = {
        "chunks": built["chunks"], "vector_index": str(kind), "index_build_seconds": built["seconds"],
        "keyword_search": settings.keyword_search, "postings_added_seconds": built.get("postings_seconds"),
        "embed": status(cache), "disk_mb": round(disk / 2**20), "open_seconds": round(opened, 1),
        "questions": len(questions), "search_p50_ms": round(percentile(search_times, 50), 1),
        "search_p95_ms": round(percentile(search_times, 95), 1), "ask_p50_ms": round(percentile(ask_times, 50), 1),
        "ask_p95_ms": round(percentile(ask_times, 95), 1),
        "dense_p50_ms": round(percentile(dense_times, 50), 2), "keyword_p50_ms": round(percentile(keyword_times, 50), 2),
        "keyword_p95_ms": round(percentile(keyword_times, 95), 2), "top1": round(float(np.mean(top1)), 3),
        "top5": round(float(np.mean(top5)), 3), "recall_at_10": round(float(recall), 4),
        "rss_mb": round(current_rss), "peak_rss_mb": round(rss),
    }
    engine.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("plan", "embed", "status", "index", "measure"))
    parser.add_argument("--cache", default=os.environ.get("QA_BENCH_CACHE", str(ROOT / "bench" / ".cache" / "million")))
    parser.add_argument("--chunks", type=int, default=1_000_000, help="chunks to plan and embed")
    parser.add_argument("--size", type=int, default=1_000_000, help="chunks to index and measure")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--first-shard", type=int, default=0, help="embed shards from this one on")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the encoder")
    parser.add_argument("--questions", type=int, default=200, help="SQuAD dev questions timed (plus news_dev's)")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.stage == "status":
        print(json.dumps(status(cache), indent=1))
        return
    if args.stage == "measure":
        print(json.dumps(measure(cache, args.size, args.questions, {}), indent=1))
        return
    from qa.embedding import OnnxEncoder

    encoder = OnnxEncoder(threads=args.threads)
    corpus = Corpus()
    log(f"corpus: {len(corpus.real)} real articles, {len(corpus.sentences):,} sentences to recombine")
    if args.stage in ("plan", "embed"):
        if args.worker == 0:
            plan(cache, args.chunks, encoder, corpus)
        while load_plan(cache).get("planned_chunks", 0) < args.chunks:
            time.sleep(5)  # another worker writes the plan
        if args.stage == "embed":
            embed(cache, encoder, corpus, args.worker, args.workers, args.first_shard)
            log(json.dumps(status(cache)))
    elif args.stage == "index":
        build_index(cache, args.size, encoder, corpus, {})


if __name__ == "__main__":
    main()
