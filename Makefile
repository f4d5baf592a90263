# The two commands of the README. Both create .venv if it is missing and install the pinned package
# into it (torch from the `cpu` extra: the local CPU build, not GBs of CUDA wheels), then run offline.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SIZE   ?= tiny
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1

.PHONY: setup reproduce test test-fast lint clean-world

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

# The main job: the whole tiny study, offline, on CPU; then its summary, executed notebooks and figure
# go to docs/$(SIZE)/ (and, at tiny, the README's results block is rewritten from the summary).
reproduce: $(STAMP)
	$(BIN)/vd reproduce --size $(SIZE)
	$(BIN)/vd publish --size $(SIZE)

# The whole test suite, notebooks included.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

# The contributors' loop: the unit tests without notebook executions and without the `slow` marks.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The pinned linter (pyproject's `dev` extra, configured in [tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check vd tests benchmarks notebooks

# Remove the cached tiny world(s) so the next run rebuilds them.
clean-world:
	rm -rf "$${VD_HOME:-$$HOME/.cache/value-drifts}/tiny"
