"""The int8 ONNX encoder: the same vectors every time, close to float32, checked at load, and an
index that refuses vectors of another encoder."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import numpy as np
import pytest

from qa import Engine
from qa.embedding import SHIPPED_ENCODER, OnnxEncoder, SentenceTransformerEncoder, make_encoder
from qa.errors import BadInput, Damaged, IndexMismatch
from tests.conftest import CORPUS, make_settings

TEXTS = [
    "Kyivstar, Ukraine's largest mobile operator, was hit by a cyber attack on Tuesday.",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy.",
    "Sky UK Limited is a British media and telecommunications company.",
    "Seven drones were shot down over the capital, the mayor said.",
]


@pytest.fixture(scope="module")
def float32_encoder():
    return SentenceTransformerEncoder(make_settings(CORPUS).model)


def test_default_is_the_shipped_int8_encoder(encoder):
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.identity.startswith("onnx-int8:")
    assert encoder.dimension == 384


def test_vectors_are_the_same_every_time_alone_or_among_others(encoder):
    first = encoder.encode(TEXTS)
    again = encoder.encode(list(reversed(TEXTS)))[::-1]
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
    assert np.array_equal(first, again)
    assert np.array_equal(first, alone)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_vectors_are_close_to_float32(encoder, float32_encoder):
    chunks = TEXTS + [path.read_text()[:1500] for path in sorted(CORPUS.iterdir())]
    cosines = (encoder.encode(chunks) * float32_encoder.encode(chunks)).sum(axis=1)
    assert cosines.min() > 0.98, cosines
    # The nearest text of each query is the same under both encoders.
    queries = ["cyber attack on a phone operator", "who gave their name to Normandy?"]
    int8 = np.argmax(encoder.encode(queries) @ encoder.encode(chunks).T, axis=1)
    float32 = np.argmax(float32_encoder.encode(queries) @ float32_encoder.encode(chunks).T, axis=1)
    assert list(int8) == list(float32) == [0, 1]


def test_token_counts_match_the_model_tokenizer(encoder, float32_encoder):
    texts = TEXTS + ["", "naïve café — “quoted” 12,000 x-59"]
    assert encoder.count_tokens(texts) == float32_encoder.count_tokens(texts)


def test_torch_stays_selectable_and_a_bad_choice_is_refused(tmp_path):
    assert isinstance(make_encoder(make_settings(tmp_path, encoder="torch")), SentenceTransformerEncoder)
    with pytest.raises(BadInput, match="QA_ENCODER"):
        make_encoder(make_settings(tmp_path, encoder="int4"))


def test_a_damaged_encoder_file_is_refused(tmp_path):
    folder = tmp_path / "encoder"
    shutil.copytree(SHIPPED_ENCODER, folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(Damaged, match="model.onnx"):
        OnnxEncoder(folder)


def test_an_index_refuses_vectors_of_another_encoder(tmp_path, seed_index, float32_encoder):
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    with pytest.raises(IndexMismatch, match="encoder 'onnx-int8:[0-9a-f]+' \\(settings ask for 'torch-float32'\\)"):
        Engine(make_settings(directory, reader="rules"), encoder=float32_encoder)


def test_an_index_from_before_encoders_were_recorded_holds_float32_vectors(tmp_path, encoder, float32_encoder):
    directory = tmp_path / "index"
    engine = Engine(make_settings(directory, reader="rules", encoder="torch"), encoder=float32_encoder)
    engine.ingest_paths([CORPUS])
    engine.close()
    with sqlite3.connect(directory / "index.sqlite") as db:  # as an older version wrote it
        manifest = json.loads(db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()[0])
        del manifest["encoder"]
        db.execute("UPDATE meta SET value = ? WHERE key = 'manifest'", (json.dumps(manifest),))
    with pytest.raises(IndexMismatch, match="torch-float32"):
        Engine(make_settings(directory, reader="rules"), encoder=encoder)
    reopened = Engine(dataclasses.replace(make_settings(directory, reader="rules")), encoder=float32_encoder)
    assert reopened.search("Kyivstar cyber attack", k=1)[0].article_id
    reopened.close()


def test_a_text_of_no_tokens_gets_a_zero_vector_and_spoils_no_other():
    """With a tokenizer that adds no special tokens, "" has no tokens: its row would be all masked,
    which the model without its NaN guards (qa/int8.py) turns to NaN for the whole run."""
    from tokenizers.processors import TemplateProcessing

    bare = OnnxEncoder(SHIPPED_ENCODER, threads=1, batch_size=8)
    bare._tokenizer.post_processor = TemplateProcessing(single="$A", special_tokens=[])
    vectors = bare.encode(["", TEXTS[0], TEXTS[1]])
    assert not vectors[0].any()
    assert np.isfinite(vectors).all()
    assert np.array_equal(vectors[1:], bare.encode(TEXTS[:2]))
