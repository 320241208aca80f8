# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz clean chromium postgres

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# index the bundled samples (hashes, embeddings, ImageNet tags), run similarity queries, a tag search, a
# duplicate search, and match a new listing photo (not indexed) against them
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
	$(BIN)/python -c "from PIL import Image; im = Image.open('samples/images/coffee.png').convert('RGB'); \
	  im.rotate(4, expand=True, fillcolor='white').crop((40, 30, 560, 380)).save('demo-out/new_listing.jpg', quality=70)"
	$(BIN)/simsearch match demo-out/new_listing.jpg --index demo-out/index

test: $(STAMP) chromium postgres
	$(BIN)/python -m pytest -q

# tests/test_postgres.py starts a real PostgreSQL server on 127.0.0.1 (Debian package), installed here when root can
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	  || echo "PostgreSQL is not installed: the PostgreSQL tests will be skipped"

# the HTML report test renders pages in headless Chromium (Debian package), installed here when root can
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is not installed: the browser test of the HTML reports will be skipped"

# benchmarks compare against imagededup (installed only here) and Immaculate, a peer that needs Python >= 3.12
# and runs from its own environment, .venv-peers (never a dependency of simsearch)
PEERS_PYTHON ?= $(firstword $(foreach p,python3.13 python3.12 $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.1[23]*/bin/python3.1[23]),$(shell $(p) -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && echo $(p))))
bench: $(STAMP)
	$(BIN)/pip install -q -r requirements-bench.lock
	@if [ -n "$(PEERS_PYTHON)" ]; then [ -x .venv-peers/bin/immaculate ] || { $(PEERS_PYTHON) -m venv .venv-peers \
	  && .venv-peers/bin/pip install -q "immaculate[sscd]==0.3.0"; }; \
	else echo "no Python >= 3.12: Immaculate is left out of the quality benchmark"; fi
	$(BIN)/python benchmarks/run_all.py

# a long seeded fuzz run of the decoder and the indexer (tests/test_fuzz.py runs a short one)
fuzz: $(STAMP)
	$(BIN)/python benchmarks/fuzz.py

clean:
	rm -rf $(VENV) .venv-peers demo-out
