"""Paths in options that must stay inside the directory the deployment gives the product."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gim_tasks.options.registry import OptionError

if TYPE_CHECKING:
    from gim_tasks.options.values import Options

#: (section, option) whose value is a directory that must lie under GIM_OUTPUT_DIRECTORY.
CONFINED = {("gim-export", "output-directory")}


def confined_directory(text: str, base: Path) -> Path:
    """``text`` as a directory under ``base`` (absolute, or relative to ``base``), resolved
    (``..`` and symbolic links followed); OptionError when it lies outside ``base``."""
    configured = Path(text)
    root = base.resolve()
    resolved = (configured if configured.is_absolute() else root / configured).resolve()
    if resolved != root and root not in resolved.parents:
        raise OptionError(
            f"[gim-export] output-directory '{text}' lies outside GIM_OUTPUT_DIRECTORY "
            f"({root}); give a directory under it, or a path relative to it"
        )
    return resolved


def check_confined(section: str, name: str, text: str, base: Path | None) -> None:
    """Refuse (OptionError, nothing stored) a confined option's value outside ``base``."""
    if base is not None and (section, name) in CONFINED:
        confined_directory(text.strip(), base)


def resolve_output_directory(options: Options, base: Path) -> Path:
    """The export folder: the option, resolved under ``base`` (GIM_OUTPUT_DIRECTORY) when
    relative. It must lie under ``base``: the option is an admin's to set from the web, and
    must not reach the rest of the host (GimError otherwise)."""
    return confined_directory(str(options.get("gim-export", "output-directory")), base)
