"""``python -m videogen`` runs the command line."""

from __future__ import annotations

import sys

from videogen.cli import main

sys.exit(main())
