"""The `qa` command: a thin shell over one `Engine`.

Errors the user can fix come out as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Sequence

from .errors import BadInput, QAError
from .records import Filters
from .settings import Settings, check_exposure

log = logging.getLogger("qa")


def _engine(settings: Settings):
    from .engine import Engine

    return Engine(settings)


def _ready_engine(settings: Settings):
    """An engine whose index holds at least the corpus (a first question builds it). With no
    index and no corpus to build one from (qa run from another folder, a mistyped QA_INDEX_DIR),
    a question is refused before any folder is made: an empty new index would answer nothing."""
    local = settings.backend == "sqlite" or not settings.milvus_uri
    if local and not Path(settings.index_dir).exists() and not Path(settings.corpus_dir).is_dir():
        raise BadInput("no_index", f"no index in {settings.index_dir} and no articles in {settings.corpus_dir} to build one "
                       "from; run qa in the project's folder, set QA_INDEX_DIR, or add articles with qa ingest")
    engine = _engine(settings)
    engine.build_if_empty()
    return engine


def _progress(description: str):
    """A progress bar on a terminal; nothing when the output goes to a file or a pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit="chunk")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_ingest(args, settings: Settings) -> int:
    from .articles import read_paths

    articles = read_paths(args.paths)  # every file read and checked before the index is touched
    if not articles:
        raise QAError("nothing", "no articles found in " + " ".join(args.paths))
    engine = _engine(settings)
    report = engine.ingest(articles, _progress("embedding"))
    print(f"{len(report.added)} added, {len(report.replaced)} replaced, {report.chunks} chunks in {report.seconds:.1f}s")
    return 0


def cmd_rebuild(args, settings: Settings) -> int:
    """Re-embed every stored article in place, in one atomic change (after a change of model or
    chunking, or to recover from a damaged vector file). The old index answers until it is done."""
    from .engine import rebuild_index

    report = rebuild_index(settings, progress=_progress("embedding"))
    print(f"rebuilt {len(report.replaced)} articles, {report.chunks} chunks")
    return 0


def cmd_export(args, settings: Settings) -> int:
    from .backup import export_articles

    count = export_articles(settings, args.file)
    print(f"exported {count} articles to {args.file}")
    return 0


def cmd_backup(args, settings: Settings) -> int:
    from .backup import backup_index

    generation, articles = backup_index(settings, args.folder)
    print(f"backed up {articles} articles (generation {generation}) to {args.folder}")
    return 0


def cmd_migrate(args, settings: Settings) -> int:
    """Copy the index the settings name into another backend, vectors included."""
    from .backends.factory import with_backend
    from .backup import migrate_index

    articles, chunks = migrate_index(settings, with_backend(settings, args.target))
    print(f"migrated {articles} articles, {chunks} chunks to {args.target}")
    return 0


def _filters(args) -> Filters:
    return Filters(args.published_from, args.published_to, args.source, tuple(args.article_ids))


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all given must hold)")
    group.add_argument("--from", dest="published_from", metavar="DATE", help="only articles published on or after DATE (YYYY-MM-DD)")
    group.add_argument("--to", dest="published_to", metavar="DATE", help="only articles published on or before DATE (YYYY-MM-DD)")
    group.add_argument("--source", metavar="S", help="only articles of source S (exactly as stored)")
    group.add_argument("--article", dest="article_ids", metavar="ID", action="append", default=[],
                       help="only this article (repeat for more)")


def cmd_ask(args, settings: Settings) -> int:
    from .api import answer_json

    filters = _filters(args)  # a bad flag is told before the model loads
    engine = _ready_engine(settings)
    answers = engine.ask(args.question, args.top_k, filters)
    if args.json:
        print(json.dumps({"question": args.question, "answers": [answer_json(a) for a in answers]}, ensure_ascii=False, indent=2))
    elif not answers:
        print("No answer in the articles.")
    else:
        for rank, a in enumerate(answers, 1):
            c = a.citation
            print(f"{rank}. {a.text}  (score {a.score:.2f})")
            print(f"   {c.title} [{c.article_id} {c.start}:{c.end}]")
            print(f"   “{a.context.text}”")
    return 0


def cmd_search(args, settings: Settings) -> int:
    from .api import passage_json

    filters = _filters(args)
    engine = _ready_engine(settings)
    results = engine.search(args.query, args.k, filters)
    if args.json:
        print(json.dumps({"query": args.query, "results": [passage_json(p) for p in results]}, ensure_ascii=False, indent=2))
    else:
        for rank, p in enumerate(results, 1):
            text = " ".join(p.text.split())
            print(f"{rank}. {p.title} [{p.article_id} {p.start}:{p.end}] score {p.score:.4f}")
            print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


def cmd_cite(args, settings: Settings) -> int:
    from .api import match_json

    filters = _filters(args)
    engine = _ready_engine(settings)
    matches = engine.cite(args.text, args.k, filters)
    if args.json:
        print(json.dumps({"text": args.text, "matches": [match_json(m) for m in matches]}, ensure_ascii=False, indent=2))
    elif not matches:
        print("No article supports this text.")
    else:
        for rank, m in enumerate(matches, 1):
            print(f"{rank}. {m.kind} (score {m.score:.2f}) {m.title} [{m.article_id} {m.start}:{m.end}]")
            print(f"   “{' '.join(m.text.split())}”")
    return 0


def cmd_serve(args, settings: Settings) -> int:
    import uvicorn

    from .api import create_app

    check_exposure(settings)  # before the model loads: a refusal should come at once
    engine = _engine(settings)
    if args.build:
        engine.build_if_empty(_progress("building the index"))
    articles, chunks = engine.store.counts()
    log.info("serving %d articles (%d chunks) on http://%s:%d (docs at /docs)", articles, chunks, settings.host, settings.port)
    uvicorn.run(create_app(engine), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from .evaluate import evaluate_file

    report = evaluate_file(args.file, settings, limit=args.limit, reader=args.reader, gold_passages=args.gold,
                           search_only=args.search_only)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if not isinstance(value, (list, dict)):
                print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")
    return 0


def cmd_settings(args, settings: Settings) -> int:
    for env, default, help_text in Settings.describe():
        print(f"{env:<22} {default:<12} {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Search, ask and cite over news articles.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add or replace articles from .txt/.md files, folders or .jsonl files")
    p.add_argument("paths", nargs="+")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("import", help="add or replace the articles of .jsonl files (as written by qa export)")
    p.add_argument("paths", nargs="+", metavar="FILE.jsonl")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("rebuild", help="re-embed every stored article (after changing model or chunking, or "
                                       "when the vector file is damaged)")
    p.set_defaults(run=cmd_rebuild)

    p = sub.add_parser("export", help="write every article exactly as stored, with its metadata, to a .jsonl file")
    p.add_argument("file", metavar="FILE.jsonl")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("backup", help="copy the index to a new folder, consistently, while the service runs")
    p.add_argument("folder", metavar="DIR")
    p.set_defaults(run=cmd_backup)

    p = sub.add_parser("migrate", help="copy the index, vectors included, into another backend (which must be empty)")
    p.add_argument("target", metavar="TARGET", help="sqlite:FOLDER, milvus:FILE.db (Milvus Lite) or milvus:http://HOST:19530 "
                   "(QA_MILVUS_TOKEN and QA_MILVUS_PREFIX apply)")
    p.set_defaults(run=cmd_migrate)

    p = sub.add_parser("ask", help="answer a question from the articles")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    _add_filters(p)
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("search", help="find passages")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    _add_filters(p)
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("cite", help="find where the articles say a text")
    p.add_argument("text")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    _add_filters(p)
    p.set_defaults(run=cmd_cite)

    p = sub.add_parser("serve", help="serve the HTTP API on the index as it is")
    p.add_argument("--build", action="store_true", help="first index QA_CORPUS_DIR if the index is empty")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("eval", help="score a question set (news JSONL, SQuAD JSON or a citation JSONL)")
    p.add_argument("file")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--reader", default=None, help="reader to score (default: the QA_READER setting)")
    p.add_argument("--gold", action="store_true", help="SQuAD: read each question's own paragraph (no retrieval)")
    p.add_argument("--search-only", action="store_true", help="search recall and latency alone, without the reader")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_eval)

    # Listed for --help; main() hands their arguments to their own parsers.
    sub.add_parser("train-reader", help="train the neural reader (see qa/models/reader/MODEL_CARD.md)")
    sub.add_parser("tune-reader", help="tune the hybrid reader's weights on the dev sets")

    p = sub.add_parser("settings", help="list the settings and their environment variables")
    p.set_defaults(run=cmd_settings)
    return parser


# Commands with options of their own: their arguments pass through untouched (argparse's
# REMAINDER would refuse a leading "--option").
PASSTHROUGH = {"train-reader": "qa.training", "tune-reader": "qa.tuning"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            return importlib.import_module(PASSTHROUGH[argv[0]]).main(argv[1:])
        except QAError as error:
            print(f"qa: {error.message}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    if args.command in WRITING:
        # SIGTERM (a service manager, a container stopping) lands between two steps: the store
        # rolls back a write it interrupts before its commit, and one past its commit is whole.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings.from_env()
        level = settings.log_level.upper() if args.command == "serve" else "INFO" if args.verbose else "WARNING"
        logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return args.run(args, settings)
    except QAError as error:
        print(f"qa: {error.message}", file=sys.stderr)
        return 2
    except OSError as error:  # a path the system refuses (no such folder, a file where a folder goes, a port in use)
        print(f"qa: {os_error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("qa: terminated (SIGTERM); the index holds all of the interrupted write or none of it", file=sys.stderr)
        return 143


def os_error_line(error: OSError) -> str:
    """One line for an error of the file system or the network, with the path it concerns."""
    line = error.strerror or str(error)
    if error.filename is not None:
        line += f": {error.filename}"
    if error.filename2 is not None:
        line += f" -> {error.filename2}"
    return line


# Commands that write to the index.
WRITING = frozenset(("ingest", "import", "rebuild", "migrate"))


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt, so that no handler swallows it)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
