"""Allow ``python -m mattecam``."""

from mattecam.cli import main

raise SystemExit(main())
