# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean chromium

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# index the bundled samples (hashes, embeddings, ImageNet tags), run similarity queries, a tag search and a
# duplicate search
demo: $(STAMP)
	rm -rf demo-out && mkdir -p demo-out/images && cp -r samples/images/. demo-out/images/
	$(BIN)/python samples/make_variants.py demo-out/images
	$(BIN)/simsearch index demo-out/images --index demo-out/index --embed --tag imagenet --min-score 0.2
	$(BIN)/simsearch stats --index demo-out/index
	$(BIN)/simsearch search demo-out/images/chelsea.png --index demo-out/index -k 5
	$(BIN)/simsearch search demo-out/images/chelsea.png --index demo-out/index -k 5 --by phash
	$(BIN)/simsearch tags --index demo-out/index
	$(BIN)/simsearch search --tag espresso --index demo-out/index
	$(BIN)/simsearch duplicates --index demo-out/index

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# the HTML report test renders pages in headless Chromium (Debian package), installed here when root can
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is not installed: the browser test of the HTML reports will be skipped"

# benchmarks compare against imagededup, installed only here
bench: $(STAMP)
	$(BIN)/pip install -q -r requirements-bench.lock
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-out
