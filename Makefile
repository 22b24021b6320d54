# Both targets set everything up first (scripts/setup.sh is idempotent).
.PHONY: bench test setup lint

setup:
	@bash scripts/setup.sh

bench: setup
	.venv/bin/vidloader bench $(ARGS)

# ruff (lint) and mypy (types) settings are in pyproject.toml; mypy checks the vidloader package.
# Both run even when the first fails, so one run shows every finding.
lint: setup
	@rc=0; \
	.venv/bin/python -m ruff check || rc=1; \
	.venv/bin/python -m mypy || rc=1; \
	exit $$rc

test: setup lint
	.venv/bin/python -m pytest -q $(ARGS)
