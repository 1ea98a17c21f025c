# hfrnn: `make help` lists the targets. Each target sets up what it needs on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
export OMP_NUM_THREADS ?= 1

.PHONY: help install demo test test-slow bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a bare torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install hfrnn with its test dependencies

demo: $(STAMP)  ## a real HF run: addition, T=30, on the CPU (a few minutes)
	$(BIN)/hfrnn train task=addition T=30 optimizer=hf seed=0 device=cpu

test: $(STAMP)  ## the test suite (minutes on 2 cores; slow tests excluded)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## only the slow tests
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)  ## products and gradients as multiples of the machine's floor, vs a minimal formulation and hessianfree (not a test; docs/performance.md)
	$(BIN)/pip install -q -e '.[peers]' || echo "hessianfree 0.4.0 could not be installed: the benchmark skips it"
	$(BIN)/python benchmarks/bench_products.py

clean:  ## remove the virtual environment (outputs/ is kept)
	rm -rf $(VENV)

# Mutation testing (docs/mutation.md): mutmut 3, configured in pyproject's [tool.mutmut], mutates the
# HF optimizer and its maths (hessian_free, damping, search, cg, params) in a copy under mutants/
# and runs the fast tests that pin their rules against each mutant. One worker, so that a training
# run on the other core keeps it; OMP_NUM_THREADS=1 (above). Rerunning resumes where it stopped.
MUTATE_STAMP := $(VENV)/.installed-mutate

$(MUTATE_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,mutate]'
	touch $(MUTATE_STAMP)

.PHONY: mutate
mutate: $(MUTATE_STAMP)  ## mutation testing of the HF optimizer's maths (mutmut, one worker: 6-35 min by load)
	@mkdir -p mutants && printf '*\n' > mutants/.gitignore
	$(BIN)/mutmut run --max-children 1
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	@$(BIN)/python -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); \
	print('killed %(killed)d  survived %(survived)d  timeout %(timeout)d  no tests %(no_tests)d  suspicious %(suspicious)d  total %(total)d' % s); \
	print('kill rate: %.1f%% (timeouts count as killed: %.1f%%)' % (100 * s['killed'] / s['total'], 100 * (s['killed'] + s['timeout']) / s['total']))"
