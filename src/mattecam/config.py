"""Typed, validated run settings."""

from __future__ import annotations

from dataclasses import dataclass

from mattecam.errors import ConfigError
from mattecam.matte import REFINERS
from mattecam.sinks.convert import FORMATS as OUTPUT_FORMATS
from mattecam.sources.camera import CAMERA_FORMATS
from mattecam.specs import BackgroundSpec, InputSpec, OutputSpec

#: Default port of the control page (``--control-port``); 0 lets the system pick a free one.
CONTROL_PORT = 8765
#: ``-i 0`` and ``-b green``.
DEFAULT_INPUT = InputSpec.parse("0")
DEFAULT_BACKGROUND = BackgroundSpec.parse("green")


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything one run of mattecam needs; built from the config file and the command line.

    Sizes are in pixels, ``fps`` in frames per second, ``blur_strength`` is the Gaussian sigma
    in pixels at 720p height (scaled with the frame).

    ``input``, ``outputs`` and ``background`` may be given as the text a user writes (a
    flag, a config file value); they are parsed here, once, into
    :mod:`~mattecam.specs` values, which is what every stage receives.
    """

    input: InputSpec = DEFAULT_INPUT
    outputs: tuple[OutputSpec, ...] = ()
    preview: bool = False
    background: BackgroundSpec = DEFAULT_BACKGROUND
    blur_strength: float = 12.0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    loop: bool = False
    model: str = "landscape"
    camera_format: str = "auto"
    threads: int = 1
    mirror: bool = False
    refine: str = "guided"
    temporal: bool = True
    crop: bool = True
    edge_radius: int = 2
    edge_eps: float = 1e-3
    light_wrap: float = 0.0
    output_format: str = "yuyv"
    always_on: bool = False
    control: bool = False
    control_port: int = CONTROL_PORT

    def __post_init__(self) -> None:
        self._parse_specs()
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= 7680:
                raise ConfigError(f"--{name} must be between 16 and 7680 pixels, got {value}.")
        if self.fps is not None and not 1 <= self.fps <= 240:
            raise ConfigError(f"--fps must be between 1 and 240, got {self.fps:g}.")
        if not 0 <= self.blur_strength <= 100:
            raise ConfigError(f"--blur must be between 0 and 100, got {self.blur_strength:g}.")
        if self.camera_format not in CAMERA_FORMATS:
            raise ConfigError(
                f"--camera-format must be one of {', '.join(CAMERA_FORMATS)}, "
                f"got {self.camera_format!r}."
            )
        if not 1 <= self.edge_radius <= 32:
            raise ConfigError(f"--edge-radius must be between 1 and 32, got {self.edge_radius}.")
        if not 0 < self.edge_eps <= 1:
            raise ConfigError(f"--edge-eps must be in (0, 1], got {self.edge_eps:g}.")
        if not 0 <= self.light_wrap <= 1:
            raise ConfigError(f"--light-wrap must be between 0 and 1, got {self.light_wrap:g}.")
        if self.refine not in REFINERS:
            raise ConfigError(
                f"--refine must be one of {', '.join(REFINERS)}, got {self.refine!r}."
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, "
                f"got {self.output_format!r}."
            )
        if not 0 <= self.control_port <= 65535:
            raise ConfigError(
                f"--control-port must be between 1 and 65535 (or 0: any free port), "
                f"got {self.control_port}."
            )
        if not 1 <= self.threads <= 16:
            raise ConfigError(f"--threads must be between 1 and 16, got {self.threads}.")
        if not self.outputs and not self.preview:
            raise ConfigError(
                "no output: give -o /dev/videoN (a virtual camera; -o auto picks the first), "
                "-o FILE.mp4 (a video file), -o null (discard, for measuring), and/or "
                "--preview (a window)."
            )

    def _parse_specs(self) -> None:
        """Text given for a spec field becomes its spec (the frozen fields are set once,
        here, before anyone sees the object)."""
        if not isinstance(self.input, InputSpec):
            object.__setattr__(self, "input", InputSpec.parse(self.input))
        if not isinstance(self.background, BackgroundSpec):
            object.__setattr__(self, "background", BackgroundSpec.parse(self.background))
        outputs = tuple(
            o if isinstance(o, OutputSpec) else OutputSpec.parse(o) for o in self.outputs
        )
        object.__setattr__(self, "outputs", outputs)

    @property
    def size(self) -> tuple[int, int] | None:
        """Requested output (width, height); a missing side is 0 (follow the input's aspect)."""
        if self.width is None and self.height is None:
            return None
        return self.width or 0, self.height or 0
