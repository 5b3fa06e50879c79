"""Where nag's config files are, and reading one option of a config group.

The configs are versioned with the code in the repository's top-level ``experiments/`` folder;
a wheel or sdist carries the same files as ``nag/conf/`` (pyproject maps the folder into the
package). ``config_dir()`` looks, in this order, at:

1. ``$NAG_CONFIG_DIR``, when set (a folder of your own with the same layout);
2. ``nag/conf/`` beside the installed package (a wheel, ``pip install .``);
3. ``experiments/`` beside the package (a clone, or ``pip install -e .``).

Library code reads presets from here too (``load_option("method", "bananas")``), so a preset is
stated once, in its YAML file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nag.errors import ConfigError, UnknownNameError

CONFIG_NAME = "config"
ENV = "NAG_CONFIG_DIR"
PACKAGED = Path(__file__).resolve().parent / "conf"
REPOSITORY = Path(__file__).resolve().parents[1] / "experiments"


def config_dir() -> Path:
    """nag's primary config folder (see the module docstring); ConfigError when there is none."""
    env = os.environ.get(ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / f"{CONFIG_NAME}.yaml").is_file():
            raise ConfigError(
                f"nag's configs were not found: no {CONFIG_NAME}.yaml in ${ENV}={env}. Point {ENV} at a folder "
                f"with nag's config layout (a copy of the repository's experiments/ folder), or unset it to use "
                f"the configs installed with nag."
            )
        return path
    for path in (PACKAGED, REPOSITORY):
        if (path / f"{CONFIG_NAME}.yaml").is_file():
            return path
    raise ConfigError(
        f"nag's configs were not found: neither {PACKAGED} (an installed wheel) nor {REPOSITORY} (a clone) holds "
        f"{CONFIG_NAME}.yaml. Reinstall nag (pip install nag, or pip install -e . in a clone), or point {ENV} at "
        f"a copy of the repository's experiments/ folder."
    )


def group_options(group: str, root: Path | None = None) -> dict[str, Path]:
    """``{option: yaml file}`` of config group ``group`` (e.g. ``method``), sorted by name."""
    folder = (root or config_dir()) / group
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def load_option(group: str, option: str) -> dict[str, Any]:
    """The contents of ``<group>/<option>.yaml`` as a plain dict (e.g. a search-method preset)."""
    from omegaconf import OmegaConf

    options = group_options(group)
    if option not in options:
        import difflib

        close = difflib.get_close_matches(option, list(options), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {group} {option!r}. Known {group}s ({config_dir() / group}): {', '.join(options) or '(none)'}.{hint}"
        )
    return dict(OmegaConf.to_container(OmegaConf.load(options[option]), resolve=True))  # type: ignore[arg-type]


__all__ = ["CONFIG_NAME", "ENV", "config_dir", "group_options", "load_option"]
