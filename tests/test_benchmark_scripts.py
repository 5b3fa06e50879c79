"""The benchmark scripts' own logic, and each one run end to end on a tiny budget (on the synthetic
NB201 table, tests/synthetic_table.py: their mechanics, not their figures)."""
from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    """The script as a module, importable by name (worker processes unpickle its functions)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    return importlib.import_module(name)


def test_queries_to_counts_up_to_the_first_hit():
    nb = load("nb201_search")
    assert nb.queries_to([1.0, 3.0, 2.0, 5.0], 3.0) == 2
    assert math.isinf(nb.queries_to([1.0, 2.0], 3.0))


def test_a_malformed_set_is_a_usage_error(tmp_path, capsys):
    nb = load("nb201_search")
    for bad in ("bananas.surrogate=gp", "bananas=2", "q=2"):  # gp unquoted is not JSON; no METHOD.KEY
        with pytest.raises(SystemExit, match="^2$"):  # argparse: usage error
            nb.main(["--methods", "bananas", "--set", bad, "--out", str(tmp_path)])
        assert f"--set {bad!r}" in capsys.readouterr().err
    assert load("method_overrides").parse_set(['diffusion_bo.optimizer_params={"alternate": false}', "bananas.q=2"],
                                              None) == {"diffusion_bo": {"optimizer_params": {"alternate": False}},
                                                        "bananas": {"q": 2}}


def test_compare_needs_both_methods_in_the_run(tmp_path, capsys):
    nb = load("nb201_search")
    with pytest.raises(SystemExit, match="^2$"):  # argparse: usage error
        nb.main(["--methods", "bananas", "--compare", "bananas", "diffusion_bo", "--out", str(tmp_path)])
    assert "both methods must be in --methods" in capsys.readouterr().err


def test_nb201_search_runs_resumes_and_compares(synthetic_csv, tmp_path, capsys):
    nb = load("nb201_search")
    argv = [str(synthetic_csv), "--methods", "evolution", "local", "--seeds", "2", "--columns", "cifar10_test_acc",
            "--max-queries", "20", "--workers", "1", "--out", str(tmp_path), "--compare", "evolution", "local"]
    nb.main(argv)
    first = capsys.readouterr().out
    assert "4 runs to do" in first and "seed by seed, evolution vs local" in first
    for name in ("nb201_search.png", "nb201_search_curves.csv", "nb201_search_summary.csv", "runs.jsonl"):
        assert (tmp_path / name).is_file(), name
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 4
    nb.main(argv)  # every run is already in the log: nothing is rerun, the summary is the same
    again = capsys.readouterr().out
    assert "0 runs to do (4 already" in again
    assert first.split("NB201 search efficiency")[1].split("wall")[1].split("\n", 1)[1] == \
        again.split("NB201 search efficiency")[1].split("wall")[1].split("\n", 1)[1]
    nb.main(argv + ["--report", "--seed-list", "1"])  # a chosen subset of the seeds already run
    subset = capsys.readouterr().out
    assert "0 runs to do" in subset and "over 1 seeds" in subset and "(1 seeds)" in subset


def test_bo_pool_diagnostics_reads_each_model_round(synthetic_csv, tmp_path):
    diag = load("bo_pool_diagnostics")
    out = tmp_path / "d.json"
    diag.main([str(synthetic_csv), "--methods", "bananas", "--seeds", "1", "--cap", "12", "--out", str(out)])
    s = json.loads(out.read_text())["summary"]["bananas"]
    assert 1 <= s["rounds"] <= 12 - 5  # the 5 initial random queries are not model rounds
    assert 0.0 <= s["pick_is_top"] <= s["pool_has_top"] <= 1.0
    assert s["mutation_pool_picks"] == 1.0  # bananas: every pick from its mutation pool
    assert 0.0 <= s["mutation_pool_improves"] <= 1.0 and math.isfinite(s["mutation_pool_residual"])
    assert s["pick_rank"] >= 0


def test_pool_ranking_records_then_reuses_snapshots(synthetic_csv, tmp_path, capsys):
    pr = load("pool_ranking")
    argv = [str(synthetic_csv), "--methods", "bananas", "--seeds", "1", "--at", "7", "9", "--out", str(tmp_path),
            "--variant", "preset={}", 'nf={"normal_form": true}', 'gp={"surrogate": "gp"}']
    pr.main(argv)
    first = capsys.readouterr().out
    snaps = json.loads((tmp_path / "snapshots_cifar10_test_acc.json").read_text())["snapshots"]
    assert [s["n"] for s in snaps] == [7, 9] and all(len(s["history"]) == s["n"] for s in snaps)
    assert "preset" in first and "nf" in first and "gp" in first
    pr.main(argv)  # same key: the snapshots are loaded, and the scores are the same
    assert capsys.readouterr().out.split("\n")[1:-2] == first.split("\n")[1:-2]


def test_meta_predictor_transfer_scores_both_columns(synthetic_csv, capsys):
    load("meta_predictor_transfer").main([str(synthetic_csv)])
    rows = {line.split()[1]: line.split()[2:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"cifar10_test_acc", "cifar100_test_acc"}
    for rho, top50, top500 in rows.values():
        assert -1.0 <= float(rho) <= 1.0 and 0 <= int(top50) <= 50 and 0 <= int(top500) <= 500


def test_meta_predictor_transfer_binds_every_task_of_a_source(synthetic_csv, capsys):
    from nag.data.suites import get_suite

    script = load("meta_predictor_transfer")
    meta = str(script.REPO / "nag" / "assets" / "predictors" / "meta_nb201_diverse.pt")
    script.main([str(synthetic_csv), "--meta", meta, "--n-per-class", "2", "--suite-source", "shapes", "--sample", "200"])
    lines = capsys.readouterr().out.splitlines()
    n_shapes = sum(s.source == "shapes" for s in get_suite("diverse"))
    assert "200 NB201 cells" in lines[0] and len(lines[2:-1]) == 2 * n_shapes
    assert lines[-1].startswith("mean over bindings: cifar10_test_acc")
    with pytest.raises(SystemExit, match="no task of the diverse suite has source 'nope'"):
        script.main([str(synthetic_csv), "--meta", meta, "--suite-source", "nope"])


def test_surrogate_speed_times_every_surrogate(capsys):
    load("surrogate_speed").main(["--sizes", "8", "--pool", "16", "--repeats", "1"])
    out = capsys.readouterr().out
    header, row = out.splitlines()[1:3]
    assert header.split() == ["n", "fast", "gp", "ratio"]
    assert row.split()[0] == "8" and all(float(v) > 0 for v in row.split()[1:3])


def test_search_speed_runs_both_variants_and_checks_they_query_the_same(synthetic_csv, capsys):
    load("search_speed").main([str(synthetic_csv), "--methods", "bananas", "--seeds", "1", "--budget", "9"])
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0] == "bananas" and row[-1] == "yes"


def test_meta_db_pilot_tasks_and_summary():
    pilot = load("meta_db_pilot")
    tasks, suite = pilot.pilot_tasks(8)
    assert len(tasks) == 8 and not any(s.held_out for _, s in tasks) and not any(s.held_out for s in suite)
    assert len({s.family for _, s in tasks}) == 7 and [h for h, _ in tasks[:2]] == ["choose", "check"]
    assert pilot.budget_of("s40", 130) == {"epochs": 14, "max_steps": 40, "batch_size": 64, "lr": 0.05}

    def row(task, arch, acc, seed=0, half="choose"):
        return {"budget": "s40", "task": task, "half": half, "arch": arch, "seed": seed, "num_classes": 4,
                "val_acc": acc, "test_acc": acc, "wall_s": 1.0, "cpu_s": 1.0, "dead": arch == "d",
                "steps": 40.0, "hw": 64, "n_train": 100}

    rows = [row("t1", "a", 90), row("t1", "b", 60), row("t1", "d", 25), row("t1", "a", 88, seed=1),
            row("t2", "a", 50, half="check"), row("t2", "b", 80, half="check"), row("t2", "d", 25, half="check"),
            row("t1", "b", 10)]  # a second writer's copy of a run: the first row counts
    by_half = {t["half"]: t for t in pilot.summarise(rows)}
    assert by_half["choose"]["range"] == 65 and by_half["choose"]["chance"] == pytest.approx(1 / 3)
    assert by_half["choose"]["seed_sd"] == pytest.approx(2 / math.sqrt(2))
    assert by_half["all"]["winners"] == 2 and by_half["all"]["rho_live"] == pytest.approx(-1.0)
    assert by_half["all"]["dead"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_meta_db_pilot_runs_and_resumes(tmp_path, capsys):
    pilot = load("meta_db_pilot")
    out = tmp_path / "runs.jsonl"
    pilot.main(["--budgets", "s2", "--tasks", "1", "--archs", "2", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["seed"] for r in rows} == {0, 1}  # arch 1 again with seed 1
    pilot.main(["--budgets", "s2", "--tasks", "1", "--archs", "2", "--out", str(out)])
    assert len(out.read_text().splitlines()) == 3 and "0 runs to do" in capsys.readouterr().out


def test_seed_agreement_reports_rank_agreement_per_task(tmp_path, capsys):
    def write(path, flip):
        with open(path, "w") as f:
            for i in range(8):
                for seed in (0, 1):
                    acc = float(i if not (flip and seed) else 7 - i)  # the second seed agrees, or reverses
                    f.write(json.dumps({"task": "t", "arch": f"a{i}", "seed": seed, "val_acc": acc}) + "\n")

    write(tmp_path / "same.jsonl", flip=False)
    write(tmp_path / "flip.jsonl", flip=True)
    load("seed_agreement").main([str(tmp_path / "same.jsonl"), str(tmp_path / "flip.jsonl")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("t | 8 | +1.00 / 2.29 | -1.00 / 0.00 |")
    assert lines[2] == ("same.jsonl: 1 tasks; seed pairs agree at Spearman +1.000 (mean over tasks and pairs); "
                        "with 2 seeds per row the seed mean's reliability is 1.00")
    assert lines[3].startswith("flip.jsonl: 1 tasks; seed pairs agree at Spearman -1.000")


def test_seed_agreement_measures_how_alike_tasks_rank_their_shared_archs(tmp_path, capsys):
    """Tasks a and b rank the shared archs alike, c reverses them: pairs +1, -1, -1 -> mean -1/3;
    --common-tasks keeps only the tasks every file has."""
    with open(tmp_path / "db.jsonl", "w") as f:
        for task, sign in (("a", 1), ("b", 1), ("c", -1)):
            for i in range(8):
                for seed in (0, 1):
                    f.write(json.dumps({"task": task, "arch": f"a{i}", "seed": seed, "val_acc": float(sign * i)}) + "\n")
    with open(tmp_path / "ab.jsonl", "w") as f:
        for line in (tmp_path / "db.jsonl").read_text().splitlines():
            if json.loads(line)["task"] != "c":
                f.write(line + "\n")
    script = load("seed_agreement")
    script.main([str(tmp_path / "db.jsonl")])
    assert "db.jsonl: two tasks' rankings of their 8 shared archs agree at Spearman -0.333" in capsys.readouterr().out
    script.main(["--common-tasks", str(tmp_path / "db.jsonl"), str(tmp_path / "ab.jsonl")])
    out = capsys.readouterr().out
    assert "db.jsonl: 2 tasks;" in out and "db.jsonl: two tasks' rankings of their 8 shared archs agree at Spearman +1.000" in out


def test_task_similarity_finds_rankings_that_depend_on_the_task(tmp_path, capsys):
    """Two sources rank archs in opposite orders: one ranking for all tasks cannot rank both; a
    kernel over the tasks' recipes ranks each like its own source."""
    ops = ["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1"]
    archs = [f"|{a}~0|+|{b}~0|{c}~1|+|{a}~0|{b}~1|{c}~2|" for a in ops for b in ops for c in ops[:2]]
    rows = []
    for i in range(12):
        source = "digits" if i % 2 else "shapes"
        for j, arch in enumerate(archs):
            conv = arch.count("conv_3x3")
            score = conv if source == "digits" else -conv
            for seed in (0, 1):
                rows.append({"task": f"{source}{i}", "arch": arch, "space": "nb201", "seed": seed, "family": source,
                             "val_acc": 50.0 + 5 * score + 0.1 * ((j * 7 + seed) % 5), "held_out": i >= 10,
                             "recipe": {"source": source, "classes": [0, 1, 2]}})
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in rows))
    load("task_similarity").main(["--db", str(db), "--descriptor", "recipe", "--taus", "0.25"])
    out = capsys.readouterr().out
    uncond = float(out.split("uncond: leave-one-task-out ")[1].split(",")[0])
    kernel = float(out.split("recipe kernel tau=0.25: leave-one-task-out ")[1].split()[0])
    assert kernel > 0.8 and kernel > uncond + 0.5, out
    own = float(out.split("no other task): ")[1].split()[0])
    assert own > 0.8, out  # each task's ranking follows from its own rows


def test_transfer_eval_report_skips_an_undefined_spearman(tmp_path, capsys):
    import argparse

    te = load("transfer_eval")
    for seed, rho in ((0, 0.5), (1, None)):  # seed 1: a saturated task, every arch scored the same
        folder = te.run_dir(tmp_path, 7, seed)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({
            "task": "t", "guided_mean_test_acc": 90.0, "random_mean_test_acc": 80.0, "best_test_acc": 95.0,
            "random_best_test_acc": 85.0 + 20 * seed, "predictor_spearman_on_task": rho, "best_arch": "a", "wall_s": 1.0}))
    te.report(argparse.Namespace(tasks=[7], seeds=[0, 1], out=tmp_path))
    out = capsys.readouterr().out
    assert "| 105.00 | n/a |" in out and out.splitlines()[4].endswith("| 0.50 |")  # the mean over defined runs
    assert "guided best >= random best in 1 of 2 runs" in out


def test_meta_db_stats_reports_spread_seed_noise_and_winners(tmp_path, capsys):
    """Two training tasks with opposite rankings (two winners, rho -1), one held-out task; seeds agree."""
    rows = []
    for task, sign, held in (("a", 1, False), ("b", -1, False), ("c", 1, True)):
        for i in range(4):
            for seed in (0, 1):
                rows.append({"task": task, "arch": f"x{i}", "seed": seed, "val_acc": 50.0 + sign * i + 0.1 * seed,
                             "held_out": held})
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in rows))
    load("meta_db_stats").main([str(db)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "db.jsonl (24 rows)"
    header = [c.strip() for c in lines[1].strip("|").split("|")]
    training = dict(zip(header, [c.strip() for c in lines[3].strip("|").split("|")]))
    assert training["tasks"] == "2" and training["spread_sd"] == "1.1 (1.1-1.1)" and training["best_minus_worst"] == "3.0"
    assert training["seed_rho"] == "1.00" and training["distinct_winners"] == "2" and training["between_tasks_rho"].startswith("-1.00")
    assert lines[4].startswith("| held-out | 1 |")


def test_fold_table_prints_fold_family_and_gap_tables(tmp_path, capsys):
    """Per fold and per family means, and the per-task gap; an empty score (a constant task) is skipped."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "folds.csv").write_text("task,fold,meta,unconditioned,params,flops\n"
                                   "a,0,0.5,0.25,0.1,0.1\nb,0,0.7,0.75,0.3,0.3\nc,1,0.9,0.5,,\n")
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps({"task": t, "family": f}) + "\n" for t, f in (("a", "x"), ("b", "y"), ("c", "x"))))
    load("fold_table").main([str(run), "--db", str(db)])
    out = capsys.readouterr().out
    assert "| 0 | 2 | 0.60 | 0.50 | 0.20 | 0.20 |" in out and "| 1 | 1 | 0.90 | 0.50 | nan | nan |" in out
    assert "| x | 2 | 0.70 | 0.38 | 0.10 | 0.10 |" in out and "| all | 3 | 0.70 | 0.50 | 0.20 | 0.20 |" in out
    assert "mean +0.200 (SE 0.132), better on 2 of 3 tasks" in out and "heldout_tasks.csv" not in out


def test_source_rankings_predicts_a_task_best_from_its_own_source(tmp_path, capsys):
    """Two sources of 3 tasks with opposite rankings: a task's own source predicts it (rho 1); the
    mean of all other training tasks (2 alike, 3 opposite) ranks it backwards (rho -1)."""
    rows = []
    for task, source, sign, held in (("a0", "a", 1, False), ("a1", "a", 1, False), ("a2", "a", 1, False),
                                     ("b0", "b", -1, False), ("b1", "b", -1, False), ("b2", "b", -1, False), ("a9", "a", 1, True)):
        for i in range(5):
            for seed in (0, 1):
                rows.append({"task": task, "arch": f"x{i}", "seed": seed, "val_acc": 50.0 + sign * i + 0.01 * seed,
                             "recipe": {"source": source}, "held_out": held})
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in rows))
    load("source_rankings").main([str(db)])
    out = capsys.readouterr().out
    assert "6 training tasks, 1 held out; 5 shared archs" in out
    assert "| same source | 6 | 1.000 |" in out and "| own seed 0 | 6 | 1.000 |" in out
    assert "| all other training tasks | 6 | -1.000 |" in out and "same family" not in out  # no recipe names a family
    assert "| same source | 1 | 1.000 |" in out  # the held-out task, against the training tasks of its source
