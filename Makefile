# `make demo` and `make test` each work on a fresh clone: the first use creates .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench gallery tutorial clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python demo.py

test: $(BIN)/.installed
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_ops.py
	$(BIN)/python benchmarks/bench_train_step.py
	@$(BIN)/python -c "import torch" 2>/dev/null && $(BIN)/python benchmarks/bench_vs_torch.py \
		|| echo "bench_vs_torch.py needs torch: pip install -e '.[bench]'"

gallery: $(BIN)/.installed
	$(BIN)/python docs/make_gallery.py

tutorial: $(BIN)/.installed
	$(BIN)/python docs/make_tutorial.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
