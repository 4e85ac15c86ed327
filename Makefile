# berth: `make demo` and `make test` work as root on a fresh Debian 12 machine whose only
# network is the package registries. Each installs what it needs first (idempotent).

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := $(CURDIR)/.venv
BUILD := $(CURDIR)/build
BUSYBOX_IMAGE := $(BUILD)/images/busybox
GUEST := $(BUILD)/guest
DEB_PACKAGES := python3-venv python3-dev gcc busybox-static libseccomp2 runc podman skopeo \
	umoci uidmap nftables iptables procps bc docker-registry docker.io iproute2 \
	qemu-system-x86 qemu-utils linux-image-amd64 cpio tini
PYTEST_ARGS ?=

.PHONY: demo test deps venv frozen images guest lint typecheck clean bench conformance

demo: deps venv frozen images guest
	@$(VENV)/bin/python scripts/demo.py $(BUSYBOX_IMAGE) $(GUEST)

test: deps venv frozen images guest
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	BERTH_TEST_IMAGE=$(BUSYBOX_IMAGE) $(VENV)/bin/pytest $(PYTEST_ARGS)

# Debian packages: apt-get update once, only when something is missing
deps: $(BUILD)/.deps
$(BUILD)/.deps: Makefile
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@scripts/podman-conf.sh
	@mkdir -p $(BUILD) && touch $@

# the virtualenv comes from Debian's python (fast start, readable by every user)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml $(BUILD)/.deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	scripts/install-launchers.sh $(VENV) $(CURDIR)/src
	touch $@

# `berth run`'s modules in one file (src/berth/frozen.py), again whenever a source changes
FROZEN := src/berth/__pycache__/run.$(shell $(PYTHON) -c \
	'import sys; print(sys.implementation.cache_tag)').frozen
frozen: $(FROZEN)
$(FROZEN): $(shell find src/berth -name '*.py') $(VENV)/.installed
	$(VENV)/bin/python -m berth.frozen

images: $(BUSYBOX_IMAGE)/.built
$(BUSYBOX_IMAGE)/.built: src/berth/images/busybox.py $(VENV)/.installed
	$(VENV)/bin/python -m berth.images.busybox $(BUSYBOX_IMAGE)
	touch $@

# the VM test guest: Debian's kernel + a busybox initramfs with the virtio modules (cached)
guest: $(GUEST)/guest.json
$(GUEST)/guest.json: src/berth/vm/guest.py src/berth/vm/guest_init.py src/berth/vm/initramfs.py \
		$(VENV)/.installed
	$(VENV)/bin/python -m berth.vm.guest $(GUEST)

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

bench: deps venv frozen images guest
	$(VENV)/bin/python bench/runtime_start.py --image $(BUSYBOX_IMAGE)/rootfs
	$(VENV)/bin/python bench/run_latency.py
	$(VENV)/bin/python bench/idle_memory.py
	$(VENV)/bin/python bench/ps_latency.py
	$(VENV)/bin/python bench/pull.py
	$(VENV)/bin/python bench/vm_boot.py --runs 5

conformance: deps venv
	scripts/conformance.sh

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache
