"""The import contract: no module of nag imports a layer above its own (pyproject's [tool.importlinter])."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_no_module_imports_a_layer_above_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO_ROOT)
    code = lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, "an import breaks nag's layers:\n" + capsys.readouterr().out


def test_the_contract_names_every_top_level_part_of_nag() -> None:
    """A new package or module of nag must be placed in a layer, or the contract would not see it."""
    import tomllib

    layers = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    placed = {name.strip().removeprefix("nag.") for layer in layers for name in layer.split(":")}
    parts = {p.stem for p in (REPO_ROOT / "nag").glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in (REPO_ROOT / "nag").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert parts <= placed, f"not in any layer of [tool.importlinter]: {sorted(parts - placed)}"
