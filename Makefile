# One task runner. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck check install

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# facenet-pytorch's metadata pins torch 2.2; we only use its MTCNN (weights in the wheel).
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt facenet-pytorch
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/moodring analyze --heatmap heatmap.png

test: $(STAMP)
	@command -v redis-server >/dev/null || { echo "installing redis-server (tests start their own)"; \
		(apt-get install -y -q redis-server || (apt-get update -q && apt-get install -y -q redis-server)) >/dev/null; }
	@command -v promtool >/dev/null || { echo "installing prometheus (promtool tests the alert rules)"; \
		(apt-get install -y -q --no-install-recommends prometheus || (apt-get update -q && \
		apt-get install -y -q --no-install-recommends prometheus)) >/dev/null; }
	@$(BIN)/python -m pytest; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy recommender inference bot benchmarks

check: lint typecheck test
