"""The VM harness's own logic that needs no VM."""

from __future__ import annotations

from pathlib import Path

import harness


def test_paths_under_the_guests_empty_tmp_are_shared() -> None:
    """A checkout under /tmp (hidden by the guest's fresh tmpfs) becomes a share, mounted
    before the shares inside it; paths the guest sees anyway are left alone."""
    out = Path("/tmp/pytest-of-x/p1/out")
    inner = Path("/tmp/ci/main/build/out")
    got = harness._with_hidden_paths(
        [out, inner], [Path("/tmp/ci/main"), Path("/tmp/ci/main/.venv"), Path("/usr")]
    )
    assert got == [Path("/tmp/ci/main"), out, inner]
    assert harness._with_hidden_paths([out], [Path("/usr"), Path("/root/x")]) == [out]
    assert harness._with_hidden_paths([Path("/tmp/a")], [Path("/tmp/a/b")]) == [Path("/tmp/a")]
    assert harness._with_hidden_paths([], [Path("/run/user/0/r")]) == [Path("/run/user/0/r")]
