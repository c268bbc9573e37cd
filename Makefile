# Every target installs what is missing first (scripts/setup.sh is quick when already set up).
PY := .venv/bin/python
.DEFAULT_GOAL := help

.PHONY: help setup run test test-all lint bench-train bench-infer bench-storage bench-serve bench-retrain clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## create .venv and install everything (CPU torch included)
	@bash scripts/setup.sh

run: setup ## run the bot (terminal chat on the default model when no tokens are set)
	@.venv/bin/chatbot run

test: setup ## run the test suite (fast tests, then lint and types)
	@$(PY) -m pytest -q -m "not slow"
	@$(PY) -m ruff check .
	@$(PY) -m mypy

test-all: setup ## run every test, slow ones included
	@$(PY) -m pytest -q

lint: setup ## ruff and mypy only
	@$(PY) -m ruff check .
	@$(PY) -m mypy

bench-train: setup ## training speed at the tutorial configuration
	@.venv/bin/chatbot bench train --data ../shared/data/korean_chatbot/train.tsv --json

bench-infer: setup ## latency and throughput of the default model
	@.venv/bin/chatbot bench infer --json

bench-storage: setup ## logging rate, concurrent writers, mining a million messages
	@.venv/bin/chatbot bench storage --json

bench-serve: setup ## 64 group chats through python-telegram-bot against the local fake
	@.venv/bin/chatbot bench serve --platform telegram --json

bench-retrain: setup ## retraining on 10,000 mined pairs while serving
	@.venv/bin/chatbot bench retrain --json

clean: ## remove the virtual environment and caches
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
