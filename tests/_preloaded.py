"""Imported once by the forkserver that tests/crashkit.py starts: the embedding model loads there,
and every child process forked from it (a writer to kill, a server) starts with it loaded."""

from qa.embedding import SentenceTransformerEncoder
from qa.settings import Settings

ENCODER = SentenceTransformerEncoder(Settings.from_env().model)

# What the children import next, imported once here: a child then starts in milliseconds.
import qa.api  # noqa: E402
import qa.cli  # noqa: E402
import uvicorn  # noqa: E402

PRELOADED = (qa.api, qa.cli, uvicorn)
