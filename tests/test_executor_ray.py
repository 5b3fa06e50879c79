"""executor=ray for real: the same rows as executor=local, killed workers retried, a driver killed
with kill -9 resumed, clusters joined and left running, and no Ray process left behind.

Every test here starts Ray runtimes (seconds each on a 2-core box), so all are slow.
Processes are followed by pid (and start time) under the process that started them; nothing
is ended by name.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("ray")

from nag.errors import ConfigError, EvaluationError  # noqa: E402
from nag.executor import Job, fill_rows  # noqa: E402
from nag.executor.ray import RayExecutor, _descendants  # noqa: E402
from nag.io import RowStore, read_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


# ----- jobs (pickled by value: workers do not have tests/ on their path) ------------------------
def square_or_die(x: int, marker: str | None = None) -> dict:
    if marker is not None and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)  # this worker dies mid-job, once
    return {"k": x, "y": x * x, "pid": os.getpid()}


def always_die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def bad_setting() -> None:
    raise ConfigError("bad setting x=3; accepted: x in 0..2")


@pytest.fixture(autouse=True)
def _pickle_this_module_by_value():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# ----- processes ---------------------------------------------------------------------------------
def alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    out = set()
    for pid, start in procs:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[19] == start:
                    out.add((pid, start))
        except (OSError, IndexError):
            pass
    return out


def wait_gone(procs: set[tuple[int, str]], timeout: float = 30.0) -> set[tuple[int, str]]:
    """The processes of ``procs`` still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def busy_workers(root: int) -> list[int]:
    """Ray workers under ``root`` that are running one of our jobs (process title ``ray::_call``)."""
    out = []
    for pid, _ in _descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::_call"):
                    out.append(pid)
        except OSError:
            pass
    return out


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "NAG_TRACEBACK"}, "WANDB_MODE": "disabled",
            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NAG_NUM_THREADS": "1"}


class Watched:
    """``python -m nag.run <args>`` whose process tree is sampled while it runs."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "nag.run", *args], cwd=cwd, env=env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.tree: set[tuple[int, str]] = set()

    def until(self, condition: Callable[[], bool], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.tree |= _descendants(self.proc.pid)
            assert self.proc.poll() is None, f"the run ended first: {self.proc.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
        self.tree |= _descendants(self.proc.pid)

    def kill_9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()

    def finish(self, timeout: float = 600.0) -> tuple[int, str, str]:
        while self.proc.poll() is None:
            self.tree |= _descendants(self.proc.pid)
            time.sleep(0.05)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def n_rows(path: Path) -> int:
    return len(read_jsonl(path, missing_ok=True))


def run_cli(args: list[str], cwd: Path) -> tuple[dict, set]:
    """Run to the end; its results and the processes it had (all must be gone when it ends)."""
    run = Watched(args, cwd)
    code, out, err = run.finish()
    assert code == 0, err[-3000:]
    assert not wait_gone(run.tree, 10), "a process of the run outlived it"
    return json.loads(out[out.index("{"): out.rindex("}") + 1]), run.tree


# ----- the executor in this process ------------------------------------------------------------
def test_ray_executor_retries_a_killed_worker_writes_its_row_once_and_leaves_nothing(tmp_path):
    before = _descendants(os.getpid())
    marker = tmp_path / "killed_once"
    store = RowStore(tmp_path / "rows.jsonl", "k")
    with RayExecutor(num_workers=2, max_retries=2) as ex:
        jobs = [Job(i, square_or_die, (i, str(marker) if i == 1 else None)) for i in range(4)]
        assert fill_rows(store, jobs, ex, lambda job, res: res, progress=False) == 4
        runtime = _descendants(os.getpid()) - before
        with pytest.raises(ConfigError, match="bad setting x=3"):  # the job's own error, not retried
            list(ex.run([Job("bad", bad_setting)]))
    assert marker.exists()  # job 1's first worker died mid-job
    rows = read_jsonl(store.path)
    assert sorted(r["k"] for r in rows) == [0, 1, 2, 3] and [r["y"] for r in sorted(rows, key=lambda r: r["k"])] == [0, 1, 4, 9]
    assert runtime and not wait_gone(runtime, 10), "Ray processes outlived the executor that started them"

    with RayExecutor(num_workers=1, max_retries=0) as ex, pytest.raises(EvaluationError, match="rerun the same command"):
        list(ex.run([Job("doomed", always_die)]))


def test_joining_a_cluster_never_stops_it_and_a_running_runtime_is_left_alone(tmp_path):
    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", "--block"],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the head takes a while to come up
            try:
                with RayExecutor(address=address, num_workers=None) as ex:
                    assert ex.slots == 2
                    assert [r["y"] for _, r in ex.run([Job(3, square_or_die, (3,))])] == [9]
                break
            except ConfigError:
                assert time.monotonic() < deadline and head.poll() is None
                time.sleep(1)
        assert not ray.is_initialized() and head.poll() is None  # disconnected; the cluster runs on
        core = {p for p in _descendants(head.pid) if comm(p[0]) in ("gcs_server", "raylet")}
        assert len(core) == 2
        with RayExecutor(address=address, num_workers=1) as ex:  # it still takes work
            assert [r["y"] for _, r in ex.run([Job(4, square_or_die, (4,))])] == [16]
        assert alive(core) == core and head.poll() is None

        ray.init(address=address, log_to_driver=False)  # someone else's runtime in this process
        with RayExecutor(num_workers=2) as ex:
            assert [r["y"] for _, r in ex.run([Job(5, square_or_die, (5,))])] == [25]
        assert ray.is_initialized()  # used, not shut down
        ray.shutdown()
    finally:
        cluster = _descendants(head.pid)
        head.terminate()  # `ray start --block` stops the processes it started
        head.wait(60)
        assert not wait_gone(cluster, 60)


# ----- experiments on the command line ---------------------------------------------------------
META = ["experiment=build_meta_db", "meta_db.n_tasks=2", "meta_db.archs_per_task=4", "train.epochs=1"]


def meta_rows(path: Path) -> dict[tuple[str, str], float]:
    return {(r["task"], r["arch"]): r["val_acc"] for r in read_jsonl(path)}


def test_build_meta_db_on_ray_killed_with_kill_9_resumes_to_the_rows_of_local(tmp_path):
    results, _ = run_cli([*META, "executor=local", "meta_db.path=L.jsonl", f"hydra.run.dir={tmp_path / 'L'}"], tmp_path)
    assert results["n_rows"] == 8 and n_rows(tmp_path / "L.jsonl") == 8

    ray_args = [*META, "executor=ray", "executor.num_workers=2", "meta_db.path=R.jsonl", f"hydra.run.dir={tmp_path / 'R'}"]
    first = Watched(ray_args, tmp_path)
    first.until(lambda: n_rows(tmp_path / "R.jsonl") >= 2)  # some rows exist, the run goes on
    first.kill_9()
    written = n_rows(tmp_path / "R.jsonl")
    assert 2 <= written < 8
    assert not wait_gone(first.tree, 30), "Ray processes of the killed driver are left"

    results, _ = run_cli(ray_args, tmp_path)  # the same command, the same folder
    assert results["n_trained_now"] == 8 - written and results["n_rows"] == 8  # nothing retrained
    lines = (tmp_path / "R.jsonl").read_text().splitlines()
    assert len(lines) == 8  # no row doubled, not even on disk
    assert meta_rows(tmp_path / "R.jsonl") == meta_rows(tmp_path / "L.jsonl")  # pairs and val_acc


def test_a_worker_killed_mid_evaluation_is_retried_and_its_row_written_once(tmp_path):
    base = ["experiment=build_meta_db", "meta_db.n_tasks=1", "meta_db.archs_per_task=3", "train.epochs=4"]
    run = Watched([*base, "executor=ray", "executor.num_workers=2", "meta_db.path=R.jsonl",
                   f"hydra.run.dir={tmp_path / 'R'}"], tmp_path)
    run.until(lambda: n_rows(tmp_path / "R.jsonl") == 0 and bool(busy_workers(run.proc.pid)))
    victim = busy_workers(run.proc.pid)[0]  # a worker of this run, in the middle of one of its trainings
    os.kill(victim, signal.SIGKILL)
    code, out, err = run.finish()
    assert code == 0, err[-3000:]  # without a retry its training would be lost and the run would fail
    assert not wait_gone(run.tree, 10)
    assert len((tmp_path / "R.jsonl").read_text().splitlines()) == 3
    run_cli([*base, "executor=local", "meta_db.path=L.jsonl", f"hydra.run.dir={tmp_path / 'L'}"], tmp_path)
    assert meta_rows(tmp_path / "R.jsonl") == meta_rows(tmp_path / "L.jsonl")


BO = ["experiment=bo_nas", "evaluator=train_eval", "method=bananas", "budget=6", "bo.n_init=2", "bo.q=2",
      "train.epochs=1", "train.max_steps=3", "space.C=4", "space.N=1"]


def test_bo_nas_with_q_2_on_ray_resumes_after_kill_9_and_queries_what_local_queries(tmp_path):
    local, _ = run_cli([*BO, "executor=local", f"hydra.run.dir={tmp_path / 'L'}"], tmp_path)
    run_dir = tmp_path / "R"
    args = [*BO, "executor=ray", "executor.num_workers=2", f"hydra.run.dir={run_dir}"]
    first = Watched(args, tmp_path)
    first.until(lambda: n_rows(run_dir / "evaluations.jsonl") >= 3)  # in the second round
    first.kill_9()
    before = {r["arch"]: r for r in read_jsonl(run_dir / "evaluations.jsonl")}
    assert 3 <= len(before) < 6
    assert not wait_gone(first.tree, 30)

    results, _ = run_cli(args, tmp_path)
    history = read_jsonl(run_dir / "history.jsonl")
    assert [h["query"] for h in history] == [1, 2, 3, 4, 5, 6] and len({h["arch"] for h in history}) == 6
    assert all(h["wall_s"] == before[h["arch"]]["wall_s"] for h in history if h["arch"] in before)  # not retrained
    assert len((run_dir / "evaluations.jsonl").read_text().splitlines()) == 6
    reference = read_jsonl(tmp_path / "L" / "history.jsonl")
    assert [(h["arch"], h["value"]) for h in history] == [(h["arch"], h["value"]) for h in reference]
    assert (results["best_arch"], results["best_value"]) == (local["best_arch"], local["best_value"])


# ----- every other experiment that trains archs, on a runtime shared by this test --------------
def test_random_search_transfer_nas_and_trained_accuracies_give_the_rows_of_local(tmp_path):
    import ray

    from smoke import SMOKE

    from nag.experiments import run_experiment
    from nag.run import compose_config

    def run(experiment: str, executor: str, *overrides: str) -> Path:
        cfg = compose_config([f"experiment={experiment}", *SMOKE[experiment], f"executor={executor}", *overrides])
        out = tmp_path / f"{experiment}_{executor}"
        run_experiment(cfg, out_dir=out)
        return out

    def same(a: list[dict], b: list[dict], drop: tuple[str, ...]) -> bool:
        def strip(rows: list[dict]) -> list[str]:
            return sorted(json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in rows)

        return strip(a) == strip(b)

    before = _descendants(os.getpid())
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # shared by the runs below
    try:
        for experiment, rows_file, drop, extra in [
            ("random_search", "history.jsonl", ("wall_s",), ["budget=4"]),
            ("transfer_nas", "history.jsonl", ("wall_s",), ["top_k=2"]),
            ("fit_acc_predictor_mbv3", "costs.jsonl", ("train_s",), []),
        ]:
            local = read_jsonl(run(experiment, "local", *extra) / rows_file)
            on_ray = read_jsonl(run(experiment, "ray", *extra) / rows_file)
            assert local and same(local, on_ray, drop), experiment
    finally:
        ray.shutdown()
    assert not wait_gone(_descendants(os.getpid()) - before, 30)
