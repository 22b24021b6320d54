# Both targets set everything up first (scripts/setup.sh is idempotent).
.PHONY: bench test setup

setup:
	@bash scripts/setup.sh

bench: setup
	.venv/bin/vidloader bench $(ARGS)

test: setup
	.venv/bin/python -m pytest -q $(ARGS)
