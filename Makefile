# The project's single entry point.  `make demo` runs the platform, `make test` tests it; both
# install whatever is missing first (Python packages in .venv, the local stack's servers).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install demo test lint unit bench mutation stack-up stack-down clean

$(STAMP): pyproject.toml
	@echo "[make] installing UrbanPulse and its Python dependencies into $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)
	@bash deploy/install-stack.sh

demo: install
	$(BIN)/urbanpulse demo

lint: $(STAMP)
	$(BIN)/ruff check urbanpulse tests bench
	$(BIN)/ruff format --check urbanpulse tests bench
	$(BIN)/mypy urbanpulse bench

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test: install lint
	@bash deploy/install-test-tools.sh
	$(BIN)/python -m pytest

# Stepped load through bridge and processor processes vs a naive sink, and 2-instance scaling
# (BENCH_ARGS="--rates 1000,5000 --step 10"; `python -m bench.stepped --help`).
bench: install
	$(BIN)/python -m bench.stepped $(BENCH_ARGS)

# Mutation testing of the pure modules, one at a time with one worker, then the score of each;
# then the index tables' numbers, which mutmut does not mutate (tools/mutate_tables.py).
# `make mutation MODULES=urbanpulse/alerts/engine.py` runs mutmut on that module only.
mutation: $(STAMP)
	$(BIN)/python tools/mutation_score.py $(MODULES)
	$(if $(MODULES),,$(BIN)/python tools/mutate_tables.py)

stack-up: install
	$(BIN)/urbanpulse stack up

stack-down: $(STAMP)
	$(BIN)/urbanpulse stack down

clean: stack-down
	rm -rf .urbanpulse

# Kill and restart every part under simulated load for 10 minutes (SOAK_ARGS="--duration 120").
.PHONY: soak
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
