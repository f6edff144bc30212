from __future__ import annotations

import sys

from videogen.sandbox.cli import main

sys.exit(main())
