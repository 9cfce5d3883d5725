# Convenience targets; each one is a script under scripts/ that also works on its own.
.PHONY: setup demo test bench lint
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bench.sh
lint:
	bash scripts/setup.sh && $${ETUNER_VENV:-$$HOME/.cache/etuner_ros/venv}/bin/ruff check .
