"""The package layers: which parts of mattecam may import which, read from the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mattecam

PACKAGE = Path(mattecam.__file__).parent

#: The bottom layer: plain types, errors, specs and pixel helpers. It imports nothing above
#: itself, and every stage may import it.
BOTTOM = frozenset({"errors", "frame", "imaging", "slot", "specs", "v4l2"})

#: The stages, and the stages upstream of each whose data types it takes: a refiner takes
#: the segmenter's soft mask (and framed matting drives a segmenter), compositing takes the
#: matte. Nothing else: a stage never imports a stage downstream of it, nor a sibling.
STAGES: dict[str, frozenset[str]] = {
    "sources": frozenset(),
    "segmentation": frozenset(),
    "matte": frozenset({"segmentation"}),
    "compositing": frozenset({"matte"}),
    "sinks": frozenset(),
}


def part_of(path: Path) -> str:
    """The top-level part of mattecam a source file belongs to: ``sinks``, ``pipeline``..."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_parts(text: str, package: str) -> dict[str, int]:
    """The top-level parts of mattecam that source ``text`` imports (also inside functions
    and ``TYPE_CHECKING`` blocks), each with the line of its first import. ``package`` is
    the dotted package the file is in, for relative imports."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(text)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "mattecam":  # from mattecam import bench
                names = [f"mattecam.{a.name}" for a in node.names if not a.name.startswith("__")]
            else:
                names = [base]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mattecam" and len(parts) > 1:
                found.setdefault(parts[1], node.lineno)
    return found


def violations(allowed: dict[str, frozenset[str]]) -> list[str]:
    """Every import, in the parts named in ``allowed``, of a part not allowed there."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        if part not in allowed:
            continue
        package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
        for other, line in imported_parts(path.read_text(encoding="utf-8"), package).items():
            if other != part and other not in allowed[part]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports mattecam.{other}")
    return bad


def test_the_import_scan_sees_every_kind_of_import() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "import mattecam.frame\n"
        "from mattecam import bench, __version__\n"
        "from . import blend\n"
        "from ..sinks.base import Sink\n"
        "if TYPE_CHECKING:\n"
        "    from mattecam.control.server import ControlServer\n"
        "def f():\n"
        "    from mattecam.sources.file import FileSource\n"
    )
    found = imported_parts(text, "mattecam.compositing")
    assert found == {
        "frame": 3,
        "bench": 4,
        "compositing": 5,
        "sinks": 6,
        "control": 8,
        "sources": 10,
    }


def test_the_parts_named_here_exist() -> None:
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")}
    assert parts >= BOTTOM | STAGES.keys()


def test_the_bottom_layer_imports_only_the_bottom_layer() -> None:
    assert violations(dict.fromkeys(BOTTOM, BOTTOM)) == []


def test_stages_import_the_bottom_layer_and_the_stages_upstream_they_take_data_from() -> None:
    assert violations({stage: BOTTOM | up for stage, up in STAGES.items()}) == []


@pytest.mark.parametrize(
    "module", ["mattecam.control.client", "mattecam.control", "mattecam.control.protocol"]
)
def test_mattecam_ctl_loads_neither_opencv_nor_numpy_nor_the_pipeline(module: str) -> None:
    # ``mattecam ctl`` is a small HTTP client: loading OpenCV, NumPy and the pipeline to read
    # two constants made every call slow to start.
    check = (
        f"import sys, {module}; "
        "heavy = sorted({'cv2', 'numpy', 'av', 'mattecam.pipeline', 'mattecam.control.server'}"
        " & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
