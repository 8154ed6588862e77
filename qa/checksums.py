"""Checksums of model files, checked when a model is loaded, so that a truncated or altered file
is refused with one line that names it instead of giving wrong answers.

Two sources of the expected SHA-256 of a file:
- a `SHA256SUMS` file in the model's folder (`sha256sum` format), written by `write_checksums`
  (the shipped reader; any folder given in QA_MODEL or QA_READER may carry one);
- the `RECORD` of the Python package that installed the folder (the bundled embedding model:
  pip wrote each file's SHA-256 there when it installed it).

A folder with neither is loaded unchecked (logged).

    .venv/bin/python -m qa.checksums qa/models/reader   # (re)write SHA256SUMS after replacing a model
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

from .errors import Damaged

log = logging.getLogger(__name__)

SUMS = "SHA256SUMS"
# Files of a reader folder that a checksum covers. reader.json is left out on purpose: `qa
# tune-reader` rewrites its settings in place, and a wrong setting is no damaged file.
READER_FILES = ("model.onnx", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

# (folder, [(name, size, mtime_ns)]) already verified in this process: a model loaded twice (the
# encoder, then a reader sharing its weights; an engine per test) is hashed once.
_verified: set[tuple[str, tuple[tuple[str, int, int], ...]]] = set()
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str | Path, names: Iterable[str] = READER_FILES) -> Path:
    """Record the SHA-256 of each of `names` present in `folder` in `folder/SHA256SUMS`.

    Call it after writing a model into a folder (the training export, a replaced model.onnx);
    until then the folder's model is refused as damaged.
    """
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in names if (folder / name).is_file()]
    if not lines:
        raise FileNotFoundError(f"none of {', '.join(names)} in {folder}")
    partial = folder / (SUMS + ".partial")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(folder / SUMS)
    return folder / SUMS


def verify_model_files(folder: str | Path, what: str, remedy: str | None = None) -> bool:
    """Check the files of the model in `folder` against their recorded SHA-256.

    `what` names the model in the message ("reader model", "embedding model"); `remedy` says how
    to reinstall it (a default is derived from where the checksums come from). Returns False when
    nothing records checksums for this folder; raises `Damaged` when a file is missing, of another
    size, or of another SHA-256.
    """
    folder = Path(folder).resolve()
    expected, source, reinstall = _expected(folder)
    if not expected:
        log.info("no checksums recorded for the %s in %s: loaded unchecked", what, folder)
        return False
    remedy = remedy or reinstall
    state = []
    for name, (size, _) in sorted(expected.items()):
        path = folder / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise Damaged("model_damaged", f"the {what} file {path} is missing; {remedy}") from None
        if size is not None and stat.st_size != size:
            raise Damaged("model_damaged", f"the {what} file {path} is damaged ({stat.st_size} bytes where "
                          f"{source} records {size}); {remedy}")
        state.append((name, stat.st_size, stat.st_mtime_ns))
    key = (str(folder), tuple(state))
    with _lock:
        if key in _verified:
            return True
    began = time.perf_counter()
    for name, (_, digest) in sorted(expected.items()):
        if sha256_file(folder / name) != digest:
            raise Damaged("model_damaged", f"the {what} file {folder / name} is damaged (its SHA-256 is not the one "
                          f"{source} records); {remedy}")
    with _lock:
        _verified.add(key)
    log.info("checked the %s in %s against %s in %.2fs", what, folder, source, time.perf_counter() - began)
    return True


def _expected(folder: Path) -> tuple[dict[str, tuple[int | None, str]], str, str]:
    """name -> (size or None, sha256 hex) for the files of `folder`; where they come from; how to
    reinstall."""
    sums = folder / SUMS
    if sums.is_file():
        expected = {}
        for line in sums.read_text(encoding="utf-8").splitlines():
            digest, _, name = line.strip().partition("  ")
            if digest and name:
                expected[name.lstrip("*")] = (None, digest.lower())
        return expected, str(sums), (f"reinstall it, or if you replaced it on purpose, record it with "
                                     f"`python -m qa.checksums {folder}`")
    return _installed(folder)


def _installed(folder: Path) -> tuple[dict[str, tuple[int | None, str]], str, str]:
    """The checksums pip recorded for the files under `folder`, when a package installed it
    (`site-packages/<package>/...` beside `site-packages/<package>-<version>.dist-info/RECORD`)."""
    for package in [folder, *folder.parents]:
        site = package.parent
        if site == package:
            break
        for record in sorted(site.glob(f"{package.name}-*.dist-info/RECORD")):
            prefix = folder.relative_to(site).as_posix() + "/"
            expected = {}
            for line in record.read_text(encoding="utf-8").splitlines():
                path, _, rest = line.partition(",")
                hash_field, _, size = rest.partition(",")
                if path.startswith(prefix) and hash_field.startswith("sha256="):
                    raw = base64.urlsafe_b64decode(hash_field[7:] + "=" * (-len(hash_field[7:]) % 4))
                    expected[path[len(prefix):]] = (int(size) if size.isdigit() else None, raw.hex())
            if expected:
                distribution = record.parent.name.split("-")[0].replace("_", "-")
                return expected, str(record), f"reinstall it: `.venv/bin/pip install --force-reinstall {distribution}`"
    return {}, "", ""


def main(argv: list[str] | None = None) -> int:
    folders = (sys.argv[1:] if argv is None else argv) or [str(Path(__file__).resolve().parent / "models" / "reader")]
    for folder in folders:
        path = write_checksums(folder)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
