"""pytest glue for the VM tests (tests/vm).

Tests here are marked ``vm``; they skip (with the reason) when the VM cannot run
on this machine or is not built.  Build it with ``tests/vm/build.sh``, or set
MATTECAM_VM_AUTOBUILD=1 to let the first VM test run the (idempotent) build.
MATTECAM_VM=0 disables them.  Deselect with ``-m "not vm"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # works with any --import-mode
    sys.path.insert(0, _HERE)

import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "vm: runs inside the qemu test VM (tests/vm); slow, Linux x86_64 only"
    )


_autobuild_done = False


@pytest.fixture(scope="session")
def vm_ready():
    """Skip unless the VM can run; optionally build it first (MATTECAM_VM_AUTOBUILD=1)."""
    global _autobuild_done
    if (
        os.environ.get("MATTECAM_VM_AUTOBUILD") == "1"
        and not _autobuild_done
        and os.environ.get("MATTECAM_VM", "1") != "0"
    ):
        _autobuild_done = True
        proc = harness.build("--quiet", check=False)
        if proc.returncode != 0:
            pytest.skip(f"tests/vm/build.sh failed (exit {proc.returncode})")
    reason = harness.vm_available()
    if reason:
        pytest.skip(reason)
    return harness


@pytest.fixture
def vm(vm_ready):
    """The harness module, after checking the VM is available."""
    return vm_ready
