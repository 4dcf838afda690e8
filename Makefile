# Two entry points: `make demo` runs the whole pipeline, `make test` runs the test suite.
# Both create or refresh the virtual environment first and are quick when nothing changed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo_out
ENV_ID := InvertedPendulum-v5

.PHONY: demo test venv system-deps clean bench
.DELETE_ON_ERROR:

venv: $(VENV)/.stamp-install

# torch is installed first and pinned: the local CPU wheel, never the CUDA build.
$(VENV)/.stamp-install: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,emulate,bench,ray]'
	touch $@

# System tools: the ARM cross toolchain, clang (second host compiler, libFuzzer) and QEMU
# (processor-in-the-loop). Installed when we are root with apt-get; elsewhere the tests that need
# them skip and say why.
system-deps: $(VENV)/.stamp-system
$(VENV)/.stamp-system: Makefile | $(VENV)/.stamp-install
	@if command -v arm-none-eabi-gcc >/dev/null && command -v clang >/dev/null \
	    && command -v qemu-system-arm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi clang qemu-system-arm >/dev/null; \
	else echo "note: arm-none-eabi-gcc/clang/qemu-system-arm missing and not root: their tests will skip"; fi
	touch $@

test: venv system-deps
	$(BIN)/python -m pytest

# ---------------------------------------------------------------- demo pipeline
demo: venv system-deps $(DEMO)/hil/summary.json
	@echo; echo "demo finished: outputs in $(DEMO)/"
	@echo "  student:  $(DEMO)/student_eval.json"; cat $(DEMO)/student_eval.json; echo
	@echo "  export:   $(DEMO)/export/export_report.json"
	@echo "  firmware: $(DEMO)/firmware.txt"; cat $(DEMO)/firmware.txt
	@echo "  HIL:      $(DEMO)/hil/ (ticks.csv, summary.json, plots)"

$(DEMO)/teacher.npz: | $(VENV)/.stamp-install
	$(BIN)/bpd teacher train --env $(ENV_ID) --out $@

$(DEMO)/dataset.npz: $(DEMO)/teacher.npz
	$(BIN)/bpd collect --teacher $< --out $@

$(DEMO)/run/student.pt: $(DEMO)/teacher.npz $(DEMO)/dataset.npz
	rm -rf $(DEMO)/run
	$(BIN)/bpd distill --teacher $(DEMO)/teacher.npz --dataset $(DEMO)/dataset.npz --out $(DEMO)/run

$(DEMO)/student_eval.json: $(DEMO)/run/student.pt
	$(BIN)/bpd evaluate $(DEMO)/run --episodes 10 --json > $@.tmp && mv $@.tmp $@

$(DEMO)/export/export.json: $(DEMO)/run/student.pt $(DEMO)/student_eval.json
	$(BIN)/bpd export $(DEMO)/run --out $(DEMO)/export --int8

# The Cortex-M4F firmware (core + board layer + policy); without the cross compiler, say so.
$(DEMO)/firmware.txt: $(DEMO)/export/export.json
	if command -v arm-none-eabi-gcc >/dev/null; then \
	  $(BIN)/bpd firmware build $(DEMO)/export --target cortex-m4f > $@.tmp && mv $@.tmp $@; \
	else echo "arm-none-eabi-gcc not installed: firmware build skipped" > $@; fi

# One real-time episode on the simulated rig with the policy running on the (software) device,
# then one with the host computing the actions.
$(DEMO)/hil/summary.json: $(DEMO)/firmware.txt
	rm -rf $(DEMO)/hil $(DEMO)/hil-host
	$(BIN)/bpd hil run --port sim --rig gym-inverted-pendulum --policy $(DEMO)/export --mode device \
	  --episodes 1 --out $(DEMO)/hil
	$(BIN)/bpd hil run --port sim --rig gym-inverted-pendulum --policy $(DEMO)/export --mode host \
	  --episodes 1 --out $(DEMO)/hil-host

# The benchmarks behind every figure in the README (about 40 minutes on two cores).
bench: venv system-deps
	$(BIN)/python benchmarks/training_benchmark.py
	$(BIN)/python benchmarks/export_benchmark.py
	$(BIN)/python benchmarks/device_benchmark.py
	$(BIN)/python benchmarks/hil_benchmark.py

clean:
	rm -rf $(DEMO) build *.egg-info
