#!/usr/bin/env python3
"""Seed 002's ``generate_video.py`` command line, delegating to ``videogen generate``.

Every option keeps its seed meaning; the work (signing, polling, download, conform, report) is
done by the installed ``videogen`` package. ``--help`` prints seed 002's usage text.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

USAGE = """\
scripts/generate_video.py PROMPT [OPTIONS]

Arguments:
  PROMPT                Text prompt for video generation (required)

Options:
  --mode MODE           Generation mode (default: t2v_720p)
                        Pro: ti2v_pro
                        1080P: t2v_1080p, i2v_first_1080p, i2v_first_tail_1080p
                        720P: t2v_720p, i2v_first_720p, i2v_first_tail_720p, i2v_recamera_720p
  --duration SECS       Video duration: 4, 5, 6, 8, 10 (default: 5)
  --fps FPS             Frames per second: 24, 25, 30 (default: 24)
  --image URL           Input image URL for image-to-video (first frame)
  --tail-image URL      Tail image URL for first & last frame mode
  --seed INT            Random seed for reproducibility
  --output PATH         Download video to file
  --json                Output raw JSON response

Environment Variables:
  VOLC_ACCESSKEY                    Access Key ID (required)
  VOLC_SECRETKEY                    Secret Access Key (required)
  JIMENG_VIDEO_API_URL              API endpoint (default: https://visual.volcengineapi.com)
  JIMENG_VIDEO_API_TIMEOUT          Request timeout seconds (default: 300)
  JIMENG_VIDEO_POLL_INTERVAL        Polling interval seconds (default: 5)
  JIMENG_VIDEO_MAX_POLL_ATTEMPTS    Max polling attempts (default: 120)

Without VOLC_ACCESSKEY/VOLC_SECRETKEY it runs against the offline sandbox and says so, even
when another provider's key is set (nothing is billed by surprise); --provider tokenops|jenius
or VIDEOGEN_PROVIDER chooses that provider instead.
--output PATH: a path ending in .mp4 is the file; any other path is a folder to save into.
Every option of `videogen generate --help` (e.g. --no-wait, --provider, --audio) also works.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(USAGE, end="", file=sys.stderr)
        return 2
    if "-h" in args or "--help" in args:
        print(USAGE, end="")
        return 0
    try:
        from videogen.cli import main as videogen_main
    except ImportError:
        print(
            "generate_video.py: error: the videogen package is not installed: run "
            "`uv tool install jimeng-videogen-mcp` (or the project folder), or run this script "
            "with `uv run` inside that folder.",
            file=sys.stderr,
        )
        return 3
    return videogen_main(["generate", *sandbox_unless_chosen(args, os.environ), *args])


def sandbox_unless_chosen(args: list[str], env: Mapping[str, str]) -> list[str]:
    """``["--sandbox"]`` when this seed-002 (Volcengine) script has no Volcengine keys and no
    provider was chosen: ``videogen`` alone would fall back to any provider with a key (and
    bill it), which the usage above promises not to do."""
    chosen = any(a == "--provider" or a.startswith("--provider=") for a in args)
    chosen = chosen or bool(env.get("VIDEOGEN_PROVIDER", "").strip())
    volcengine = all(env.get(name, "").strip() for name in ("VOLC_ACCESSKEY", "VOLC_SECRETKEY"))
    return [] if chosen or volcengine else ["--sandbox"]


if __name__ == "__main__":
    sys.exit(main())
