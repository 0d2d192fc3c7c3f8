# KD-Gym: `make run` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: run test lint bench docs clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# Pinned pair: installs from this machine's disk; an unpinned torch may pull several GB.
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/quickstart.py

test: $(STAMP)
	# Both cores: the suite runs in two pytest-xdist workers (each test sets one torch thread).
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(PY) -m ruff check kd_envs agents scripts tests

bench: $(STAMP)
	$(VENV)/bin/kd-gym bench all

# Optional: build the documentation site (offline) into a folder outside the tree.
DOCS_SITE ?= $(or $(TMPDIR),/tmp)/kd-gym-site
docs: $(STAMP)
	$(PY) scripts/docs.py --check
	$(VENV)/bin/mkdocs build --strict -d $(DOCS_SITE)
	@echo "site: $(DOCS_SITE)/index.html"

clean-venv:
	rm -rf $(VENV)
