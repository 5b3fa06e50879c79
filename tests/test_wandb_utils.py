"""W&B helpers: offline by default, disabled in tests, finish() always, no network."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import wandb
from omegaconf import OmegaConf

from nag.errors import ConfigError
from nag.wandb_utils import lightning_logger, log_metrics, resolve_mode, wandb_run


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open an internet connection fails the test."""

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_mode_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode() == "disabled"
    assert resolve_mode("offline") == "offline"
    with pytest.raises(ConfigError, match="accepted: online, offline"):
        resolve_mode("cloud")


def test_config_is_logged_as_plain_resolved_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        return "run"

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "finish", lambda *a, **k: None)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = OmegaConf.create({"seed": 3, "task": {"name": "digits"}, "tag": "${task.name}-${seed}"})
    with wandb_run(cfg, name="n", group="g") as run:
        assert run == "run"
    assert seen["config"] == {"seed": 3, "task": {"name": "digits"}, "tag": "digits-3"}
    assert type(seen["config"]) is dict and type(seen["config"]["task"]) is dict
    assert seen["mode"] == "offline" and seen["project"] == "nag"
    assert (seen["name"], seen["group"]) == ("n", "g")


def test_disabled_touches_nothing(tmp_path: Path, no_network: None) -> None:
    with wandb_run({"a": 1}, mode="disabled", dir=tmp_path / "wb") as run:
        assert run is None
        log_metrics({"x": torch.tensor(1.0)})  # a no-op, not an error
        assert lightning_logger() is False
    assert wandb.run is None
    assert not (tmp_path / "wb").exists()


def test_finish_is_called_when_the_body_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    real_finish = wandb.finish
    monkeypatch.setattr(wandb, "finish", lambda *a, **k: (calls.append("finish"), real_finish(*a, **k)))
    with pytest.raises(RuntimeError, match="boom"):
        with wandb_run({}, mode="offline", dir=tmp_path):
            raise RuntimeError("boom")
    assert calls == ["finish"]
    assert wandb.run is None


def test_helpers_without_a_run_are_noops() -> None:
    assert wandb.run is None
    log_metrics({"x": 1.0})
    assert lightning_logger() is False


def test_offline_run_writes_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")  # explicit mode beats the environment
    with wandb_run({"lr": 0.1}, mode="offline", dir=tmp_path, name="t") as run:
        assert run.settings.mode == "offline"
        assert dict(run.config)["lr"] == 0.1
        log_metrics({"acc": torch.tensor(91.5)}, step=1)
        logger = lightning_logger(prefix="arch0")
        assert logger.experiment is run
    assert wandb.run is None
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
