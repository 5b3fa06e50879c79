"""build_meta_db rows per minute: executor=local against executor=ray, on the same work, in one run.

    python benchmarks/executor_throughput.py          # 20 tasks of the diverse suite x 20 archs (400 rows), 2 Ray workers
    python benchmarks/executor_throughput.py --n-tasks 2 --archs-per-task 4 --epochs 1 --order ray local
    python benchmarks/executor_throughput.py --order local ray ray local     # ABBA: cancels a drifting load
    python benchmarks/executor_throughput.py --n-tasks 40 --archs-per-task 30 --order local ray ray local   # 1,200 rows (45 min)

Each executor runs the real command line (``python -m nag.run experiment=build_meta_db ...``)
into a fresh row file, with one torch thread per evaluation (OMP_NUM_THREADS=NAG_NUM_THREADS=1,
executor.num_cpus=1). The script watches the row file and prints, per executor:

- ``rows/min`` end to end: rows / the command's whole wall time (Python start, Ray start and stop included);
- ``rows/min`` steady: rows after the first / the time from the first row to the last;
- CPU seconds per row (the command and every process under it, Ray's included, sampled from
  /proc): how much work a row costs, whatever share of the machine the run got;
- the 1-minute load average before and after (other processes on the machine skew the figures).

It ends with the ratios ray / local (over all runs of each, when ``--order`` repeats them) and
checks that every file holds the same (task, arch) pairs with the same val_acc.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(executor: str, args: argparse.Namespace, folder: Path, i: int) -> dict:
    rows_file = folder / f"{executor}_{i}.jsonl"
    cmd = [
        sys.executable, "-m", "nag.run", "experiment=build_meta_db", f"meta_db.n_tasks={args.n_tasks}",
        f"meta_db.archs_per_task={args.archs_per_task}", f"train.epochs={args.epochs}", f"space.C={args.C}",
        f"space.N={args.N}", f"executor={executor}", f"meta_db.path={rows_file}", f"hydra.run.dir={folder / f'{executor}_{i}'}",
    ]
    if executor == "ray":
        cmd += [f"executor.num_workers={args.workers}", "executor.num_cpus=1"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "NAG_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stamps: list[float] = []  # when each row appeared in the file
    cpu: dict[tuple[int, str], float] = {}  # (pid, start time) -> CPU seconds last seen, over the run's process tree
    size, last_cpu = -1, 0.0
    while proc.poll() is None:  # cheap: a stat every 0.1 s, a /proc scan every 1 s (the watcher shares the CPUs)
        now = time.perf_counter()
        if (s := _size(rows_file)) != size:
            size, n = s, _count(rows_file)
            stamps += [now - start] * (n - len(stamps))
        if now - last_cpu >= 1.0:
            cpu.update(_tree_cpu(proc.pid))
            last_cpu = now
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{executor} run failed ({proc.returncode}):\n{err[-3000:]}")
    n = _count(rows_file)
    stamps += [wall] * (n - len(stamps))
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan")
    results = json.loads(out[out.index("{"): out.rindex("}") + 1])
    return {"rows": n, "wall_s": wall, "first_row_s": stamps[0] if stamps else float("nan"),
            "per_min": n / wall * 60, "steady_per_min": steady, "experiment_wall_s": results["wall_s"],
            "cpu_per_row": sum(cpu.values()) / max(n, 1), "steady_span_s": stamps[-1] - stamps[0] if stamps else float("nan"),
            "load_before": load_before, "load_after": os.getloadavg()[0], "file": rows_file}


def _tree_cpu(root: int) -> dict[tuple[int, str], float]:
    """CPU seconds so far of ``root`` and every live descendant (Ray's processes too), from /proc."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stats[int(entry)] = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                pass
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    out, stack, tick = {}, [root], os.sysconf("SC_CLK_TCK")
    while stack:
        pid = stack.pop()
        if pid in stats:
            fields = stats[pid]
            out[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / tick
        stack += children.get(pid, [])
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _count(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.endswith("}"))
    except FileNotFoundError:
        return 0


def rows_of(path: Path) -> dict:
    return {(r["task"], r["arch"]): r["val_acc"] for r in map(json.loads, path.read_text().splitlines())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-tasks", type=int, default=20, help="meta_db.n_tasks: the first n tasks of the suite")
    p.add_argument("--archs-per-task", type=int, default=20, help="meta_db.archs_per_task")
    p.add_argument("--epochs", type=int, default=2, help="train.epochs of every evaluation (train.max_steps, 40 by default, caps it)")
    p.add_argument("--C", type=int, default=8, help="space.C (build_meta_db's default)")
    p.add_argument("--N", type=int, default=1, help="space.N (1: the setting of the committed figures; build_meta_db's default is 3)")
    p.add_argument("--workers", type=int, default=2, help="executor.num_workers of the Ray run")
    p.add_argument("--order", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--out", type=Path, default=None, help="folder for the row files (default: a temporary one)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="executor_throughput_") as tmp:
        folder = (args.out or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        n = args.n_tasks * args.archs_per_task
        print(f"build_meta_db: {args.n_tasks} tasks x {args.archs_per_task} archs = {n} rows, train.epochs={args.epochs}, "
              f"space C={args.C} N={args.N}; {os.cpu_count()} CPUs; one torch thread per evaluation")
        figures: dict[str, list[dict]] = {}
        for i, executor in enumerate(args.order):
            r = run(executor, args, folder, i)
            figures.setdefault(executor, []).append(r)
            label = executor if executor == "local" else f"ray x{args.workers}"
            print(f"  {label:<8} {r['rows']:>4} rows  wall {r['wall_s']:7.1f} s  first row at {r['first_row_s']:6.1f} s  "
                  f"rows/min end to end {r['per_min']:6.1f}  steady {r['steady_per_min']:6.1f}  "
                  f"CPU s/row {r['cpu_per_row']:.2f}  load {r['load_before']:.1f} -> {r['load_after']:.1f}", flush=True)
        if {"local", "ray"} <= set(figures):
            def rate(runs: list[dict], steady: bool = False) -> float:
                if steady:
                    return sum(r["rows"] - 1 for r in runs) / sum(r["steady_span_s"] for r in runs) * 60
                return sum(r["rows"] for r in runs) / sum(r["wall_s"] for r in runs) * 60

            loc, ray = figures["local"], figures["ray"]
            print(f"ratio ray/local: end to end {rate(ray) / rate(loc):.2f}, steady "
                  f"{rate(ray, True) / rate(loc, True):.2f} (goal: >= 1.7 end to end)")
            files = [rows_of(r["file"]) for runs in figures.values() for r in runs]
            print(f"same (task, arch) pairs and val_acc in every file: {all(f == files[0] for f in files)}")

if __name__ == "__main__":
    main()
