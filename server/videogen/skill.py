"""``videogen skill install``: copy the agent skill into a skills folder, never half-way."""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path
from typing import Final

from videogen.errors import OutputError

SKILL_NAME: Final = "videogen"
DEFAULT_SKILL_DIR: Final = Path("~/.claude/skills")


def skill_source() -> Path:
    """The skill folder: ``videogen/_skill`` in a wheel, or ``skill/`` in a checkout."""
    packaged = Path(__file__).resolve().parent / "_skill"
    checkout = Path(__file__).resolve().parents[2] / "skill"
    for candidate in (packaged, checkout):
        if (candidate / "SKILL.md").is_file():
            return candidate
    raise OutputError(
        "The skill files are missing from this installation (looked in "
        f"{packaged} and {checkout}): reinstall jimeng-videogen-mcp."
    )


def install_skill(skills_dir: Path, *, force: bool = False) -> Path:
    """Copy the skill into ``skills_dir/<name>/`` (the folder name must equal the skill name).

    An identical copy is left as is; a different one is replaced only with ``force``. The new
    copy is assembled next to the target and moved into place, so a failure leaves no half copy.
    """
    source = skill_source()
    dest = skills_dir.expanduser().resolve() / SKILL_NAME
    if dest.exists() or dest.is_symlink():
        if dest.is_dir() and not dest.is_symlink() and _same_tree(source, dest):
            return dest
        if not force:
            raise OutputError(
                f"{dest} already exists and differs from this version's skill: "
                "add --force to replace it."
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SKILL_NAME}-", dir=dest.parent))
    try:
        shutil.copytree(source, staging / SKILL_NAME, ignore=_IGNORED)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        (staging / SKILL_NAME).rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }

    names = files(a)
    if names != files(b):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)
