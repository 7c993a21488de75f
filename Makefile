# The two commands a newcomer needs:  `make run`  (the system, locally)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# Debian packages the network and container tests use (installed when running as root and missing): the
# container tests start a private dockerd, build a stand-in Python base with debootstrap and bring the local
# compose stack up with docker-compose; the VRF tests boot a qemu guest where this kernel has no VRF driver.
DEBIAN_PACKAGES = openssl iproute2 iputils-arping iputils-ping ndisc6 tcpdump bird2 frr gobgpd keepalived docker.io docker-compose debootstrap qemu-system-x86 kmod
# The kernel that guest boots (tests/guest_vm.py): the package is unpacked here, never installed (nothing runs
# on this machine's boot loader or initramfs), and its modules indexed.
GUEST_KERNEL_PACKAGE = linux-image-amd64
GUEST_KERNEL = .run/guest-kernel

.PHONY: run test venv debs guest-kernel lint typecheck schemas bench lock clean

LOCKS   = requirements.lock requirements-dev.lock

# Installs are constrained by the lock files: an upstream release never changes what a clone installs.
$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -c ,$(LOCKS)) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

debs:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages (network tests will be skipped)"; fi

guest-kernel:
	@if [ -d $(GUEST_KERNEL)/boot ]; then :; \
	elif command -v apt-get >/dev/null && command -v depmod >/dev/null; then \
	  set -e; rm -rf $(GUEST_KERNEL).part; mkdir -p $(GUEST_KERNEL).part; \
	  package=$$(apt-cache depends $(GUEST_KERNEL_PACKAGE) | awk '/Depends: linux-image-/ {print $$2; exit}'); \
	  echo "unpacking $$package into $(GUEST_KERNEL)"; \
	  (cd $(GUEST_KERNEL).part && apt-get download -qq $$package 2>/dev/null); \
	  dpkg-deb -x $(GUEST_KERNEL).part/*.deb $(GUEST_KERNEL).part/root; \
	  release=$$(ls $(GUEST_KERNEL).part/root/lib/modules); \
	  depmod -b $(GUEST_KERNEL).part/root $$release; \
	  mv $(GUEST_KERNEL).part/root $(GUEST_KERNEL); rm -rf $(GUEST_KERNEL).part; \
	else echo "no apt-get or depmod: no guest kernel (the VRF tests are skipped where this kernel has no VRF)"; fi

## run: the whole system in network namespaces on this machine, as root: `metalbus lab up` (Ctrl-C removes it)
run: venv debs
	$(VENV)/bin/metalbus lab up

## test: venv + Debian packages (as root) + the guest kernel + lint + types + the whole test suite
test: venv debs guest-kernel lint typecheck
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

schemas: venv
	$(PY) -m schemas.generate

bench: venv
	$(PY) bench/bus.py

## lock: refresh both lock files from the newest releases pyproject.toml allows (an explicit step; review the diff)
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python deploy/lock.py > requirements.lock
	.lock-venv/bin/python deploy/lock.py --dev > requirements-dev.lock
	rm -rf .lock-venv $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
