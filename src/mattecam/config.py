"""Typed, validated run settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mattecam.errors import ConfigError
from mattecam.matte import REFINERS
from mattecam.segmentation.models import MODELS
from mattecam.sinks.convert import FORMATS as OUTPUT_FORMATS
from mattecam.sources.camera import CAMERA_FORMATS
from mattecam.specs import BackgroundSpec, InputSpec, OutputSpec

#: Default port of the control page (``--control-port``); 0 lets the system pick a free one.
CONTROL_PORT = 8765
#: ``-i 0`` and ``-b green``.
DEFAULT_INPUT = InputSpec.parse("0")
DEFAULT_BACKGROUND = BackgroundSpec.parse("green")


#: Command-line flags whose name is not the setting's (``--NAME-WITH-DASHES`` otherwise).
FLAGS = {"input": "-i", "outputs": "-o", "background": "-b", "blur_strength": "--blur"}
#: Numeric settings' allowed ranges, inclusive, with a unit or note for the message.
RANGES: dict[str, tuple[float, float, str]] = {
    "width": (16, 7680, " pixels"),
    "height": (16, 7680, " pixels"),
    "fps": (1, 240, ""),
    "blur_strength": (0, 100, ""),
    "edge_radius": (1, 32, ""),
    "light_wrap": (0, 1, ""),
    "control_port": (0, 65535, " (0: any free port)"),
    "threads": (1, 16, ""),
}
#: Settings that take one of a few names.
CHOICES: dict[str, tuple[str, ...]] = {
    "camera_format": CAMERA_FORMATS,
    "refine": tuple(REFINERS),
    "output_format": tuple(OUTPUT_FORMATS),
}


def flag(key: str) -> str:
    """The command-line flag of setting ``key``: ``blur_strength`` -> ``--blur``."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


class SettingError(ConfigError):
    """One setting has a value out of its range or choices.

    ``key`` names the setting and ``problem`` says what is wrong ("must be between 0 and
    100, got 200."); the message names it as a flag, and each edge that knows better says it
    in its own words with :meth:`named` (the config file's key, the API's field).
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{flag(key)} {problem}")
        self.key = key
        self.problem = problem

    def named(self, name: str) -> ConfigError:
        """The same error, the setting called ``name``."""
        return ConfigError(f"{name} {self.problem}")


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
        for key, (low, high, note) in RANGES.items():
            value = getattr(self, key)
            if value is not None and not low <= value <= high:
                raise SettingError(
                    key, f"must be between {low:g} and {high:g}{note}, got {value:g}."
                )
        path = Path(self.model).expanduser()
        if self.model not in MODELS and path.suffix != ".tflite" and not path.exists():
            raise SettingError(
                "model",
                f"must be one of {', '.join(MODELS)} or a path to a .tflite file, "
                f"got {self.model!r}.",
            )
        if not 0 < self.edge_eps <= 1:
            raise SettingError("edge_eps", f"must be in (0, 1], got {self.edge_eps:g}.")
        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                raise SettingError(
                    key, f"must be one of {', '.join(choices)}, got {getattr(self, key)!r}."
                )
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
