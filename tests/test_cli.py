"""The command line (``python -m nag.run``), run as a user runs it: in a subprocess.

Plus in-process tests of the runner: results/config files and the short error messages
(random_search's kill-and-resume tests are in test_resume.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import nag.experiments as experiments
from nag.errors import ConfigError, UnknownNameError
from nag.experiments import list_experiments, run_experiment
from nag.io import read_jsonl
from nag.registry import Registry
from nag.run import CliError, compose_config

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT_DIR = REPO / "experiments" / "experiment"
TINY = ["train.epochs=1", "train.max_steps=2", "space.C=4", "space.N=1"]
BAD_ARCH = "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def nag_run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "NAG_TRACEBACK"}
    full_env.update({"WANDB_MODE": "disabled", "PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "nag.run", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600
    )


def assert_usage_error(out: subprocess.CompletedProcess, *names: str) -> str:
    """Exit code 2, one short ``error:`` message on stderr naming ``names``, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    err = out.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) <= 3, err
    for name in names:
        assert name in err, (name, err)
    return err


# ----- --help ---------------------------------------------------------------------------------
def test_help_lists_experiments_with_their_description_and_groups(tmp_path):
    out = nag_run("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for path in EXPERIMENT_DIR.glob("*.yaml"):
        description = path.read_text().splitlines()[1].lstrip("#").strip()
        assert path.stem in out.stdout and description in out.stdout
    lines = out.stdout.splitlines()
    assert any(line.split()[:1] == ["space"] and "nb201" in line for line in lines)
    assert any(line.split()[:1] == ["task"] and "digits" in line for line in lines)
    assert len(lines) < 45  # short, not Hydra's full help


# ----- usage errors: short messages naming the accepted choices -------------------------------
@pytest.mark.parametrize(
    "args, names",
    [
        (["experiment=no_such_experiment"], ["'no_such_experiment'", "evaluate", "random_search"]),
        ([], ["experiment=", "evaluate", "random_search"]),
        (["experiment=random_search", "space=nb2001"], ["'nb2001'", "nb201", "mbv3", "Did you mean 'nb201'"]),
        (["experiment=random_search", "task=no_such_task"], ["'no_such_task'", "digits"]),
        (["experiment=random_search", "budgte=3"], ["'budgte'", "budget", "seed", "train", "Did you mean 'budget'"]),
        (["experiment=random_search", "train.epoch=1"], ["'train.epoch'", "epochs", "batch_size", "'train.epochs'"]),
        (["experiment=random_search", "spcae.C=4"], ["'spcae.C'", "Did you mean 'space'"]),
        (["experiment=random_search", "space.Q=4"], ["'space.Q'", "C, N"]),
        (["experiment=evaluate", "arch=???"], ["'arch'", "arch=<value>"]),
        (["experiment=evaluate", "arch='|broken"], ["key='value'"]),
    ],
)
def test_usage_errors_exit_2_with_choices(tmp_path, args, names):
    assert_usage_error(nag_run(*args, cwd=tmp_path), *names)
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize(
    "args, names",
    [
        (["method=diffusion_bo", "+method_params.optimizer_params.wieght=3"],
         ["'diffusion' has no setting 'wieght'", "trust_top", "Did you mean 'weight'"]),
        (["bo.acquisition=ucb", "+method_params.acquisition_params.kapa=2"], ["'ucb' has no setting 'kapa'", "Did you mean 'kappa'"]),
        (["bo.surrogate=gp", "bo.ensemble=5"], ["'gp' has no setting 'ensemble'", "length_scales"]),
    ],
)
def test_a_misspelt_method_setting_exits_2_before_any_query(tmp_path, args, names):
    assert_usage_error(nag_run("experiment=bo_nas", *args, "hydra.run.dir=run", cwd=tmp_path), *names)
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "history.jsonl").exists()


# ----- typed configs: a wrong type or an out-of-range value is one line naming key, value, accepted ----
BAD_VALUES = [
    (["experiment=generate", "n=-5"], "config key 'n' = -5 is not accepted: expected an int >= 1."),
    (["experiment=generate", "n=abc"], "config key 'n' = 'abc' is not accepted: expected an int >= 1."),
    (["experiment=generate", "solver.steps=0"], "config key 'solver.steps' = 0 is not accepted: expected an int >= 1."),
    (["experiment=generate", "batch_size=0"], "config key 'batch_size' = 0 is not accepted: expected an int >= 1."),
    (["experiment=generate", "seed=1.5"], "config key 'seed' = 1.5 is not accepted: expected an int >= 0."),
    (["experiment=bo_nas", "budget=-1"], "config key 'budget' = -1 is not accepted: expected an int >= 1."),
    (["experiment=guided_generation", "min_uniqueness=1.5"],
     "config key 'min_uniqueness' = 1.5 is not accepted: expected a number > 0 and <= 1 or null."),
    (["experiment=guided_generation", "guidance.weight=abc"],
     "config key 'guidance.weight' = 'abc' is not accepted: expected a number."),
    (["experiment=generate", "trainer.devices=0"],
     "config key 'trainer.devices' = 0 is not accepted: expected an int >= 1, one of -1, 'auto' or a list of ints >= 0."),
    (["experiment=generate", "solver=pc", "solver.snr=-1"], "config key 'solver.snr' = -1 is not accepted: expected a number > 0."),
    (["experiment=random_search", "train.momentum=1.5"],
     "config key 'train.momentum' = 1.5 is not accepted: expected a number >= 0 and < 1."),
    (["experiment=random_search", "space.C=0"], "config key 'space.C' = 0 is not accepted: expected an int >= 1."),
    (["experiment=bo_nas", "method=bananas", "bo.pool_size=0"],
     "config key 'bo.pool_size' = 0 is not accepted: expected an int >= 1 or null."),
]


@pytest.mark.parametrize("args, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_refused_before_anything_runs(args, message):
    with pytest.raises(CliError) as info:
        compose_config(args)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "args, message",
    [BAD_VALUES[1], BAD_VALUES[7]] + [pytest.param(*b, marks=pytest.mark.slow) for i, b in enumerate(BAD_VALUES[:8]) if i not in (1, 7)],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_values_exit_2_with_one_error_line(tmp_path, args, message):
    out = nag_run(*args, "hydra.run.dir=run", cwd=tmp_path)
    err = assert_usage_error(out, message)
    assert err == f"error: {message}"  # one line, no traceback
    assert not (tmp_path / "run").exists()  # nothing ran


def test_switching_solvers_needs_no_tilde():
    """A solver option replaces the whole node: the other solver's keys do not linger."""
    pc = compose_config(["experiment=generate", "solver=pc"]).solver
    assert pc.name == "pc" and "method" not in pc and "snr" in pc
    ode = compose_config(["experiment=guided_generation", "solver=ode"]).solver
    assert ode.name == "ode" and "snr" not in ode and ode.steps == 100  # the recipe's steps stay


def test_missing_config_folder_is_explained(tmp_path):
    out = nag_run("experiment=evaluate", cwd=tmp_path, env={"NAG_CONFIG_DIR": str(tmp_path / "nowhere")})
    assert_usage_error(out, "NAG_CONFIG_DIR", "unset it to use the configs installed with nag")


def test_unknown_option_in_a_sweep_is_caught_too(tmp_path):
    out = nag_run("-m", "experiment=random_search", "space=nb201,nb2001", cwd=tmp_path)
    assert_usage_error(out, "'nb2001'", "nb201")


def test_malformed_arch_exits_2_naming_accepted_ops(tmp_path):
    out = nag_run("experiment=evaluate", f"arch={BAD_ARCH}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    err = assert_usage_error(out, "nor_conv_9x9", "nor_conv_3x3", "skip_connect", "avg_pool_3x3")
    assert "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in err
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_traceback_on_request(tmp_path):
    out = nag_run("experiment=evaluate", f"arch='{BAD_ARCH}'", cwd=tmp_path, env={"NAG_TRACEBACK": "1"})
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "InvalidArchError" in out.stderr


# ----- a real, tiny run -------------------------------------------------------------------------
def test_random_search_run_writes_results_config_and_history(tmp_path):
    run_dir = tmp_path / "run"
    out = nag_run(
        "experiment=random_search", "space=nb201", "task=digits", "budget=2", *TINY, f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"best_arch", "best_val_acc", "best_test_acc", "n_evaluated", "wall_s"}
    assert results["n_evaluated"] == 2 and results["wall_s"] > 0
    assert isinstance(results["best_arch"], str) and results["best_arch"].count("~") == 6
    rows = read_jsonl(run_dir / "history.jsonl")
    assert [r["i"] for r in rows] == [0, 1] and len({r["arch"] for r in rows}) == 2
    best = max(rows, key=lambda r: r["val_acc"])  # chosen by validation accuracy...
    assert results["best_arch"] == best["arch"] and results["best_val_acc"] == best["val_acc"]
    assert results["best_test_acc"] == best["test_acc"]  # ...and reported with its test accuracy
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.name == "random_search" and cfg.budget == 2 and cfg.space.name == "nb201" and cfg.space.C == 4
    assert cfg.task.name == "digits" and cfg.train.epochs == 1 and cfg.wandb.mode == "disabled"
    assert "${" not in (run_dir / "config.yaml").read_text()  # resolved
    assert json.loads(out.stdout[: out.stdout.rindex("}") + 1]) == results


def test_user_config_folder_via_searchpath(tmp_path):
    """A user's own folder adds options and recipes (the subprocess run of a user folder is in
    tests/test_plugins.py::test_example_plugin_runs_from_the_command_line)."""
    user = tmp_path / "my_configs"
    (user / "experiment").mkdir(parents=True)
    (user / "space").mkdir()
    (user / "space" / "tiny201.yaml").write_text("# NB201 with 4 channels, 1 cell per stage.\nname: nb201\nC: 4\nN: 1\n")
    (user / "experiment" / "my_eval.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            # Evaluate the all-3x3 cell, tiny.
            defaults:
              - evaluate
              - override /space: tiny201
            name: my_eval
            runner: evaluate
            arch: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
            train:
              epochs: 1
              max_steps: 2
            """
        )
    )
    searchpath = f"hydra.searchpath=[file://{user}]"
    help_out = nag_run("--help", searchpath, cwd=tmp_path)
    assert "my_eval" in help_out.stdout and "Evaluate the all-3x3 cell, tiny." in help_out.stdout
    assert "tiny201" in help_out.stdout
    assert_usage_error(nag_run(searchpath, "experiment=my_eval", "space=tiny2001", cwd=tmp_path), "tiny201", "nb201")
    cfg = compose_config([searchpath, "experiment=my_eval"])
    assert cfg.name == "my_eval" and cfg.space.C == 4 and cfg.train.max_steps == 2 and cfg.train.lr == 0.1
    results = run_experiment(cfg, out_dir=tmp_path / "run")
    assert results["arch"].count("nor_conv_3x3") == 6 and results["n_runs"] == 1
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").name == "my_eval"


# ----- the runner, in-process -----------------------------------------------------------------
@pytest.fixture
def fresh_experiments(monkeypatch) -> Registry:
    reg: Registry = Registry("experiment", group="nag.experiments")
    monkeypatch.setattr(experiments, "EXPERIMENTS", reg)
    return reg


def test_run_experiment_writes_config_and_numbers_only_results(tmp_path, fresh_experiments):
    seen = {}

    @experiments.experiment("t_ok")
    def ok(cfg):
        seen["run_dir"] = experiments.run_dir()
        return {"acc": 91.5, "n": 3, "arch": "a-b", "flag": True}

    cfg = OmegaConf.create({"name": "t_ok", "seed": 0, "x": "${seed}", "wandb": {"mode": "disabled"}})
    assert run_experiment(cfg, out_dir=tmp_path) == {"acc": 91.5, "n": 3, "arch": "a-b", "flag": True}
    assert json.loads((tmp_path / "results.json").read_text()) == {"acc": 91.5, "n": 3, "arch": "a-b", "flag": True}
    assert OmegaConf.load(tmp_path / "config.yaml").x == 0
    assert seen["run_dir"] == tmp_path
    with pytest.raises(ConfigError, match=r"run_dir\(\) is only defined inside run_experiment\(cfg\)"):
        experiments.run_dir()  # only inside a run


def test_run_experiment_refuses_non_scalar_results_and_keeps_config(tmp_path, fresh_experiments):
    @experiments.experiment("t_list")
    def bad(cfg):
        return {"archs": ["a", "b"]}

    cfg = OmegaConf.create({"name": "t_list", "wandb": {"mode": "disabled"}})
    with pytest.raises(TypeError, match="archs"):
        run_experiment(cfg, out_dir=tmp_path)
    assert (tmp_path / "config.yaml").exists() and not (tmp_path / "results.json").exists()


def test_runner_key_picks_the_function(tmp_path, fresh_experiments):
    experiments.experiment("t_base")(lambda cfg: {"name_seen": cfg.name})
    cfg = OmegaConf.create({"name": "my_variant", "runner": "t_base", "wandb": {"mode": "disabled"}})
    assert run_experiment(cfg, out_dir=tmp_path) == {"name_seen": "my_variant"}


def test_missing_builtin_module_means_not_available(monkeypatch):
    monkeypatch.setitem(experiments._BUILTINS, "t_missing", "nag.experiments._no_such_module")
    assert "t_missing" not in list_experiments()
    assert {"evaluate", "random_search"} <= set(list_experiments())
    with pytest.raises(UnknownNameError, match="t_missing.*not available"):
        experiments.get_experiment("t_missing")


def test_unknown_space_name_lists_known_spaces():
    with pytest.raises(CliError, match=r"unknown space option 'no_such_space' \(space=no_such_space\). Available for space=: .*nb201"):
        compose_config(["experiment=evaluate", "space.name=no_such_space"])
    with pytest.raises(CliError, match="search space 'nb201' has no setting 'width'; it accepts: C, N."):
        compose_config(["experiment=evaluate", "+space.width=3"])


def test_compose_config_quotes_arch_strings():
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert compose_config(["experiment=evaluate", f"arch={arch}"]).arch == arch
    with pytest.raises(CliError, match="Did you mean 'budget'"):
        compose_config(["experiment=evaluate", "budgte=2"])


def test_distinct_sample_is_seeded_prefix_stable_and_distinct():
    from nag.spaces import get_space

    space = get_space("nb201")
    eight = experiments.distinct_sample(space, 8, seed=3)
    assert experiments.distinct_sample(space, 5, seed=3) == eight[:5]
    assert len({space.canonical(a) for a in eight}) == 8
    assert experiments.distinct_sample(space, 8, seed=4) != eight

    class OneClass:
        name = "one_class"

        def sample(self, n, rng):
            return [("a",)] * n

        def canonical(self, arch):
            return "same"

    with pytest.raises(ConfigError, match="distinct isomorphism classes"):
        experiments.distinct_sample(OneClass(), 2, seed=0)
