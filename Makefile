# The same commands locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# What `make run` needs (the service) and what the tests, lint and `make model` need on top
# (pytest, Playwright, ruff, mypy, and the train extra: PyTorch 2.13 CPU for `inspectd train`).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint format bench chromium clean model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $(DEV_STAMP) $(RUN_STAMP)

## Start the service with its embedded defaults on http://127.0.0.1:8080
run: $(RUN_STAMP)
	$(BIN)/inspectd serve --demo

# The RTSP pull tests serve a camera with GStreamer's RTSP server (system python3 + gi):
# x264enc (ugly), x265enc and voaacenc (bad), the RTP payloaders (good).
TEST_DEBS := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-rtsp
# tests/deploy validate deploy/ offline: docker-compose (v1, `config` needs no engine), caddy
# (`caddy adapt --validate` on the Caddyfile), coturn (the TURN config against real turnserver).
TEST_DEBS += docker-compose caddy coturn
# Tests start their own redis-server when none answers at 127.0.0.1:6379, and their own
# PostgreSQL cluster (initdb, postgres) when none answers at 127.0.0.1:5432.
TEST_DEBS += redis-server postgresql
# tests/deploy run the secret check under busybox sh and awk, and shellcheck the scripts.
TEST_DEBS += busybox shellcheck
# The drawn product labels of the OCR tests use DejaVu Sans.
TEST_DEBS += fonts-dejavu-core
# Captions tests speak with espeak-ng; the Japanese, Chinese and Korean page screenshots need a
# CJK font (WenQuanYi Zen Hei covers kana, hanzi and hangul).
TEST_DEBS += espeak-ng fonts-wqy-zenhei

## Chromium for the end-to-end tests and GStreamer for the RTSP tests (Debian packages; never a
## downloaded browser); installs only what is missing
chromium:
	@missing=$$( command -v chromium >/dev/null 2>&1 || echo chromium; \
	  for deb in $(TEST_DEBS); do \
	    dpkg-query -W -f='$${Status}' $$deb 2>/dev/null | grep -q 'ok installed' || echo $$deb; \
	  done ); \
	[ -z "$$missing" ] || { \
	  echo "installing Debian packages for the tests:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; }

## Run the lint, then the whole test suite (installs what it needs)
test: lint chromium
	$(BIN)/python -m pytest

## ruff, ruff format --check and mypy (strict); `make test` runs it first
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Train, export and evaluate the default grader from its seed (CPU: ~12 min on 2 cores):
## writes inference/models/grader-v1.onnx, grader-v1-fp16.onnx and grader-v1.json
model: $(DEV_STAMP)
	$(BIN)/python -m inference.training --seed 20250101 --count 14000 --epochs 3 \
	  --out-dir inference/models --name grader-v1

bench: $(DEV_STAMP)
	$(BIN)/python bench/connect.py
	$(BIN)/python bench/forwarding.py
	$(BIN)/python bench/grading.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts
