"""Imported once by the forkserver that tests/crashkit.py starts: the embedding model loads there,
and every child process forked from it (a writer to kill, a server) starts with it loaded."""

from qa.embedding import make_encoder
from qa.settings import Settings

ENCODER = make_encoder(Settings.from_env())

# What the children import next, imported once here: a child then starts in milliseconds.
import qa.api  # noqa: E402
import qa.cli  # noqa: E402
import uvicorn  # noqa: E402

PRELOADED = (qa.api, qa.cli, uvicorn)
