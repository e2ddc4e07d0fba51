#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then lint, type-check and test.
#   bash scripts/test.sh                      # the whole suite, VM tests included (~15 min)
#   MATTECAM_VM_TESTS=0 bash scripts/test.sh  # without the VM tests (~2 min)
#   bash scripts/test.sh tests/test_cli.py    # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --dev

.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy

marker="not vm"
if [ "${MATTECAM_VM_TESTS:-1}" = 1 ]; then
    marker=""
    # The qemu VM with real v4l2loopback devices (idempotent: a no-op when already built).
    bash tests/vm/build.sh --quiet
fi
# pytest exits 5 when it collected no test: that is a failure here, as is any other non-zero.
.venv/bin/python -m pytest -m "$marker" "$@"
