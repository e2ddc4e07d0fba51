"""Wires a run from settings: source, processing stage (built by :mod:`mattecam.stages`),
sinks, and the live-control services."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from mattecam.config import Settings
from mattecam.configfile import ConfigWatcher, LoadedConfig
from mattecam.errors import ConfigError
from mattecam.live import LiveController
from mattecam.pipeline import Pipeline
from mattecam.sinks import LatestFrameSink, PreviewSink, make_sink
from mattecam.sinks.base import Sink
from mattecam.sources import make_source
from mattecam.stages import build_processor

if TYPE_CHECKING:
    from mattecam.control.server import ControlServer


log = logging.getLogger(__name__)


def build_pipeline(settings: Settings, *, extra_sinks: Sequence[Sink] = ()) -> Pipeline:
    """Validate everything that can be checked before opening devices, and wire the stages.

    Batch mode (every frame, as fast as possible) when a video file goes only to files or
    null; live mode (paced input, newest frame wins, output on its own clock) otherwise.
    ``extra_sinks`` (the control page's frame tap) are added without changing the mode.
    """
    check_outputs(settings)
    sinks: list[Sink] = [
        make_sink(spec, output_format=settings.output_format) for spec in settings.outputs
    ]
    if settings.preview:
        sinks.append(PreviewSink())
    live = settings.input.is_camera or settings.loop or any(s.live for s in sinks)
    sinks.extend(extra_sinks)
    for sink in sinks:  # a missing library or daemon is reported before the camera opens
        sink.check()
    fps = settings.fps
    if not live and fps is not None:
        # Writing every input frame at another rate would change the video's duration.
        log.warning(
            "--fps %g applies to cameras and live outputs; a file made from a file keeps the "
            "input's frame rate and duration",
            fps,
        )
        fps = None
    source = make_source(
        settings.input,
        size=settings.size,
        fps=fps,
        loop=settings.loop,
        realtime=live,
        camera_format=settings.camera_format,
    )
    processor = build_processor(settings)
    return Pipeline(source, processor, sinks, live=live, fps=fps, always_on=settings.always_on)


def check_outputs(settings: Settings) -> None:
    """Refuse, before anything is opened, an output that would overwrite what the run
    reads (the input, a background picture or video) or that another output also writes:
    the same file under any name (``./``, a symlink, a hard link) or the same device.

    Raises:
        ConfigError: naming both options and the fix.
    """
    reads = [(f"the input (-i {settings.input})", settings.input.path)]
    if settings.background.path is not None:
        reads.append((f"the background (-b {settings.background})", settings.background.path))
    written: list[tuple[str, Path]] = []
    for spec in settings.outputs:
        path = spec.path
        if path is None:  # null, or the first free virtual camera
            continue
        for what, other in [*reads, *written]:
            if _same_file(path, other):
                if what.startswith("-o"):
                    raise ConfigError(
                        f"-o {spec} and {what} are the same file or device; give each output once."
                    )
                raise ConfigError(
                    f"-o {spec} is {what}: writing it would destroy it. Choose another output name."
                )
        written.append((f"-o {spec}", path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode when both exist, else the same
    absolute path with symlinks resolved."""
    try:
        return a.samefile(b)
    except OSError:  # one does not exist (yet)
        return a.resolve() == b.resolve()


class LiveSession:
    """A pipeline with its live-control services: the config file watcher (when the run's
    settings came from :func:`mattecam.configfile.load`) and the control server (with
    ``settings.control``). ``extra_sinks`` are passed to :func:`build_pipeline`.

    Built and entered on the main thread before :meth:`Pipeline.run
    <mattecam.pipeline.Pipeline.run>`, which the caller runs inside the ``with`` block; the
    services run on their own named threads, and leaving the block (or :meth:`close`,
    idempotent) stops them, then closes the pipeline (which releases its model if it never
    ran). A busy control port is reported before any device is opened.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config: LoadedConfig | None = None,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.latest = LatestFrameSink() if settings.control else None
        sinks = [*extra_sinks, *([self.latest] if self.latest else [])]
        self.pipeline = build_pipeline(settings, extra_sinks=sinks)
        self.controller = LiveController(self.pipeline, settings, latest=self.latest)
        self.watcher: ConfigWatcher | None = None
        self.server: ControlServer | None = None
        self._stack = ExitStack()
        self._stack.callback(self.pipeline.close)  # last: after the services that use it
        try:
            if config is not None:
                self.watcher = ConfigWatcher(
                    config,
                    lambda changes: self.controller.change(**changes),
                    on_error=self._config_error,
                )
                self._stack.callback(self.watcher.close)
            if settings.control:
                from mattecam.control.server import ControlServer

                self.server = ControlServer(
                    self.controller, port=settings.control_port, publish_endpoint=True
                )
                self._stack.callback(self.server.close)
        except BaseException:
            self._stack.close()  # the pipeline will not run: it releases the model
            raise

    def _config_error(self, message: str | None) -> None:
        self.controller.config_error = message

    @property
    def control_url(self) -> str | None:
        """The control page's address with its token, when the control server runs."""
        return self.server.url if self.server is not None else None

    def start(self) -> None:
        """Start the watcher and the control server."""
        if self.watcher is not None:
            self.watcher.start()
        if self.server is not None:
            self.server.start()

    def close(self) -> None:
        """Stop the services, then close the pipeline. Idempotent."""
        self._stack.close()

    def __enter__(self) -> LiveSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
