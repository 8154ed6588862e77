# `make serve` and `make test` each set up what is missing (.venv/, pinned dependencies, the
# bundled offline model) and then run. Nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: serve test bench eval soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned, so that nothing pulls a CUDA build in its place.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,milvus]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/qa serve --build

test: $(STAMP)
	$(BIN)/python -m pytest -q

eval: $(STAMP)
	$(BIN)/qa eval data/news_dev.jsonl
	$(BIN)/qa eval data/news_unanswerable_dev.jsonl
	$(BIN)/qa eval data/squad/dev-v2.0-part.json
	$(BIN)/qa eval data/cite_dev.jsonl

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# 300 writes killed at seeded moments, then 10 minutes of 8 readers, a writer and a second process
# (about 20 minutes; the suite runs the same, shorter).
soak: $(STAMP)
	$(BIN)/python bench/soak.py --kills 300 --minutes 10

clean:
	rm -rf $(VENV) index/*.sqlite* index/vectors-* index/write.lock
