# The two commands: `make demo` runs the whole system locally, `make test` runs every check.
# Both bootstrap their own virtualenv; nothing needs to be installed by hand but CPython 3.13 (with
# its headers), a C compiler and make (README "Prerequisites").
# The Lambda runtime's Python (template.yaml, Globals Runtime: python3.13): every venv, the C fast
# path's local build and the layer's bytecode use it. PY is found here: `python3.13` if it runs (a
# pyenv shim that is not enabled does not), else pyenv's newest 3.13.x ($PYENV_ROOT or ~/.pyenv),
# else /usr/local/bin or /usr/bin; `make PY=/path/to/python3.13 ...` overrides.
LAMBDA_PYTHON_VERSION := 3.13
ifeq ($(origin PY),undefined)
PY := $(shell for p in python$(LAMBDA_PYTHON_VERSION) \
	$$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$(LAMBDA_PYTHON_VERSION).*/bin/python$(LAMBDA_PYTHON_VERSION) 2>/dev/null | sort -rV) \
	/usr/local/bin/python$(LAMBDA_PYTHON_VERSION) /usr/bin/python$(LAMBDA_PYTHON_VERSION); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LAMBDA_PYTHON_VERSION)".split("."))))' \
	>/dev/null 2>&1 && command -v "$$p" && break; done)
endif
ifeq ($(PY),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),venv)),)
$(error CPython $(LAMBDA_PYTHON_VERSION) not found (tried python$(LAMBDA_PYTHON_VERSION) on PATH, pyenv's versions/$(LAMBDA_PYTHON_VERSION).*, /usr/local/bin, /usr/bin). Install it with its headers (python$(LAMBDA_PYTHON_VERSION)-dev, or `pyenv install $(LAMBDA_PYTHON_VERSION)`), or run make PY=/path/to/python$(LAMBDA_PYTHON_VERSION): README "Prerequisites")
endif
endif
# A venv made by another Python (python3.11 before issue 28) is made again on PY's: every stamp
# below names the runtime's Python version, and this checks the venv's interpreter before use.
define runtime_venv
@$(1)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LAMBDA_PYTHON_VERSION)".split("."))))' \
	2>/dev/null || { rm -rf $(1) && $(PY) -m venv $(1); }
endef
VENV := .venv
BIN := $(VENV)/bin
# the dev venv is installed from requirements-dev.lock (hashes; `make lock` writes it from
# requirements.txt and requirements-dev.txt), so every machine gets the same versions
LOCK := requirements-dev.lock
LAYER_LOCK := layers/core/requirements.lock
STAMP := $(VENV)/.installed-py$(LAMBDA_PYTHON_VERSION)-$(shell cat $(LOCK) | sha1sum | cut -c1-12)
PIP_VERSION := 26.3
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed-py$(LAMBDA_PYTHON_VERSION)-$(SAM_CLI_VERSION)
SAM_CLI_VERSION := 1.170.0
# the Lambda architecture of every function and of the core layer (template parameter Architecture):
# x86_64 (default, built and tested here) or arm64 (needs an arm64 build host: docs/decisions.md#architecture)
ARCHITECTURE ?= x86_64
export ARCHITECTURE
# checkov in a venv of its own (its pins conflict with the project's), at a fixed version
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-py$(LAMBDA_PYTHON_VERSION)-$(CHECKOV_VERSION)
# aws-sam-translator (what `sam deploy` expands the template with) in a venv of its own: it pins
# pydantic, and the product's pydantic is the layer's. The local stack runs each function with its
# role as SAM expands it (local/iam.py, local/sam_expand.py).
SAMT_VERSION := 1.115.0
SAMT_VENV := .venv-samt
SAMT_STAMP := $(SAMT_VENV)/.installed-py$(LAMBDA_PYTHON_VERSION)-$(SAMT_VERSION)
PYTHONPATH := layers/core/python:.
# the splitter's C fast path (layers/core/native), built next to the core package's sources: one
# stable-ABI module for every CPython >= 3.11 (docs/decisions.md#native-fast-path)
NATIVE := layers/core/python/verifyfeed/_fastsplit.abi3.so

# demo options (make variables or environment): see README "Running locally"
export TEMPLATE FILE KIND UPSTREAM_URL CLOCK_NOW CALLBACK_PORT CALLBACK_SECRET API_ID POLL_SECONDS JSON DEMO_TIMEOUT
# make up / make down (local/stack.py): the local stack in the background, on fixed ports
# (defaults AWS_PORT=8795 SANDBOX_PORT=8796 CALLBACK_PORT=8797), its endpoints in .local-state/stack.json
export AWS_PORT SANDBOX_PORT UP_TIMEOUT VERIFYFEED_STATE_DIR

.PHONY: sam-translator venv lock check-lock native sanitize demo up down test pytest load lint typecheck cfn-lint checkov bandit sam-build sam-validate bench sandbox clean

$(STAMP): $(LOCK) pyproject.toml
	$(call runtime_venv,$(VENV))
	$(BIN)/pip install -qq "pip==$(PIP_VERSION)"
	@# exactly the lock: every version pinned, every file checked against its hash
	$(BIN)/pip install -qq --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip check
	@# the core package and the operators' CLI (verifyfeed_cli, outside the layer), editable, for
	@# the `verifyfeed` console script (.venv/bin/verifyfeed),
	@# built by the locked setuptools (no build isolation: nothing unpinned is fetched)
	$(BIN)/pip install -qq --no-build-isolation --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

$(SAMT_STAMP):
	$(call runtime_venv,$(SAMT_VENV))
	$(SAMT_VENV)/bin/pip install -qq "aws-sam-translator==$(SAMT_VERSION)" "pyyaml>=6,<7"
	@rm -f $(SAMT_VENV)/.installed-* && touch $@

sam-translator: $(SAMT_STAMP)

# Re-resolve both locks from requirements*.txt and layers/core/requirements.txt (PyPI, CPython
# $(LAMBDA_PYTHON_VERSION) on Linux): run after changing a requirement, commit the locks. The layer's lock is constrained by
# the dev lock, so the layer ships the versions the tests run with (tests/unit/test_build.py checks).
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --no-header --annotation-style line \
	--python-version $(LAMBDA_PYTHON_VERSION) --index-url https://pypi.org/simple
# Pins already in a lock are kept where they still satisfy the requirements; `make lock UPGRADE=1`
# moves everything to the newest versions allowed.
lock: $(STAMP)
	$(UV_COMPILE) --python-platform x86_64-unknown-linux-gnu $(if $(UPGRADE),--upgrade) -o $(LOCK) requirements-dev.txt
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_17 -c $(LOCK) -o $(LAYER_LOCK) layers/core/requirements.txt

$(NATIVE): layers/core/native/fastsplit.c layers/core/native/build.py $(STAMP)
	$(BIN)/python layers/core/native/build.py

native: $(NATIVE)

# the C fast path's tests under AddressSanitizer and UndefinedBehaviorSanitizer (not part of `test`)
SANITIZED := .venv/sanitized
sanitize: $(STAMP)
	rm -rf $(SANITIZED) && mkdir -p $(SANITIZED) && cp -R layers/core/python/verifyfeed $(SANITIZED)/
	rm -f $(SANITIZED)/verifyfeed/_fastsplit*.so
	FASTSPLIT_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		$(BIN)/python layers/core/native/build.py --out $(SANITIZED)/verifyfeed
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(cc -print-file-name=libasan.so) $$(cc -print-file-name=libubsan.so)" \
		PYTHONPATH=$(SANITIZED):. $(BIN)/python -m pytest -q -p no:cacheprovider -o pythonpath= \
		tests/unit/test_fastsplit.py tests/unit/test_repair_batches.py

demo: $(STAMP) $(NATIVE) $(SAMT_STAMP)
	@PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m local.demo

up: $(STAMP) $(NATIVE) $(SAMT_STAMP)
	@PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m local.stack up

down: $(STAMP)
	@PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m local.stack down

sandbox: $(STAMP)
	PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m sandbox

test: lint typecheck cfn-lint checkov bandit sam-build pytest

pytest: $(STAMP) $(NATIVE) $(SAMT_STAMP)
	PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m pytest

# the full-size load tests (200,000 rows, 1,000 concurrent callbacks; minutes): figures in docs/reliability.md
load: $(STAMP) $(NATIVE) $(SAMT_STAMP)
	PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m pytest -m load -s tests/reliability/test_load.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	@# the four handlers are all called app.py: one mypy run each
	@for f in functions/*/app.py; do MYPYPATH=$(PYTHONPATH) $(BIN)/mypy --strict $$f || exit 1; done

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

$(CHECKOV_STAMP):
	$(call runtime_venv,$(CHECKOV_VENV))
	$(CHECKOV_VENV)/bin/pip install -qq "checkov==$(CHECKOV_VERSION)"
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

# every check passes or is skipped in template.yaml with its reason (docs/decisions.md#checkov-skips),
# on the template and on what SAM expands it to (what CloudFormation creates: the generated stage,
# functions and permissions carry the skips of the resource they come from, local/sam_expand.py)
EXPANDED := .aws-sam/expanded/template.json
checkov: $(CHECKOV_STAMP) $(SAMT_STAMP)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
	@mkdir -p $(dir $(EXPANDED))
	$(SAMT_VENV)/bin/python local/sam_expand.py us-east-1 --template template.yaml --out $(EXPANDED) UpstreamApiId=checkov
	$(CHECKOV_VENV)/bin/checkov -f $(EXPANDED) --framework cloudformation --skip-download --compact --quiet

# no finding above low in the deployed code and the operators' CLI (the lows: `bandit -r layers functions verifyfeed_cli`)
bandit: $(STAMP)
	$(BIN)/bandit -q -r layers functions verifyfeed_cli --severity-level medium

$(SAM_STAMP):
	$(call runtime_venv,$(SAM_VENV))
	$(SAM_VENV)/bin/pip install -q "aws-sam-cli==$(SAM_CLI_VERSION)"
	@rm -f $(SAM_VENV)/.installed-* && touch $@

# ARCHITECTURE=arm64 builds for Graviton: the layer build then needs an arm64 host (it fails
# loudly elsewhere rather than ship a layer without the splitter's C fast path). PY's directory
# comes first on PATH: SAM's Python builds look for python3.13 there (a pyenv shim would not do),
# and the layer Makefile compiles the layer's bytecode with it.
PY_VERSION_TAG := $(subst .,,$(LAMBDA_PYTHON_VERSION))
sam-build: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint
	PATH="$(dir $(PY)):$$PATH" LAMBDA_PYTHON="$(PY)" SAM_CLI_TELEMETRY=0 \
		$(SAM) build --cached --parallel --parameter-overrides Architecture=$(ARCHITECTURE)
	@# the core layer as Lambda will load it: with bytecode for python$(LAMBDA_PYTHON_VERSION) (docs/performance.md)
	@test -f .aws-sam/build/CoreLayer/python/verifyfeed/logic/__pycache__/callback.cpython-$(PY_VERSION_TAG).pyc \
		|| { echo "sam-build: the core layer has no python$(LAMBDA_PYTHON_VERSION) bytecode"; exit 1; }

bench: $(STAMP) $(NATIVE) $(SAMT_STAMP)
	$(BIN)/pip install -qq -r bench/requirements.txt
	PYTHONPATH=$(PYTHONPATH) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(SAMT_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
	rm -f layers/core/python/verifyfeed/_fastsplit*.so
