"""``experiment=random_search``: train ``budget`` random architectures, keep the best.

It is the ``random`` method of nag's search loop (``nag.search.run_search``) with a
``TrainEvalEvaluator``: ``budget`` distinct architectures, drawn uniformly with ``seed``, each
really trained with the ``train`` budget (training seed ``seed``). The best is chosen by
**validation** accuracy and its **test** accuracy is reported, so the test split never
influences the choice.

Files in the run folder:
  - ``history.jsonl``: one row per evaluated architecture (``i``, ``arch``, ``val_acc``,
    ``test_acc``, ``wall_s``, ``params_M``), appended (one fsynced line) after its round;
  - ``search_state.json``: the loop's state (history and generator), replaced atomically
    after every round;
  - ``evaluations.jsonl``: every training, written as soon as it finishes (``RowStore`` by arch).
The trainings run on ``executor``: ``local`` one per round, ``ray`` as many per round as it
has workers, in flight together. The archs drawn, and so the rows, are the same either way.
Rerunning with the same ``hydra.run.dir`` resumes: evaluated architectures are not trained
again (not even those of a round cut short), and the search continues with exactly the draws
an uninterrupted run would make (a larger ``budget`` extends a finished search).

Results: ``best_arch``, ``best_val_acc``, ``best_test_acc``, ``n_evaluated``, and ``wall_s``
(training + evaluation seconds summed over all evaluated archs, resumed ones included).
"""
from __future__ import annotations

from omegaconf import DictConfig

from nag.evaluation import TrainBudget, TrainEvalEvaluator
from nag.executor import build_executor
from nag.experiments import build_budget, build_space, build_task, distinct_sample, experiment, run_dir, trainer_settings
from nag.experiments.config import PositiveInt, RunConfig
from nag.io import RowStore, append_jsonl, read_jsonl
from nag.search import SearchContext, build_method, run_search
from nag.wandb_utils import log_metrics

HISTORY = "history.jsonl"
STATE = "search_state.json"
EVALUATIONS = "evaluations.jsonl"
ROW_KEYS = ("val_acc", "test_acc", "wall_s", "params_M")

__all__ = ["random_search", "distinct_sample"]  # distinct_sample: re-exported for older imports


class RandomSearchConfig(RunConfig):
    budget: PositiveInt
    train: TrainBudget


@experiment("random_search", schema=RandomSearchConfig)
def random_search(cfg: DictConfig) -> dict:
    """Random search over ``cfg.space`` on ``cfg.task``; see the module docstring."""
    space = build_space(cfg)
    n = cfg.budget
    seed = int(cfg.seed)
    with build_executor(cfg.get("executor")) as executor:
        evaluator = TrainEvalEvaluator(space, build_task(cfg), build_budget(cfg), seed=seed, metric="val_acc",
                                       trainer=trainer_settings(cfg), executor=executor, store=RowStore(run_dir() / EVALUATIONS, "arch"))
        return _search(space, evaluator, n, seed, batch=executor.slots)


def _search(space, evaluator: TrainEvalEvaluator, n: int, seed: int, batch: int) -> dict:
    history_path = run_dir() / HISTORY
    written = len(read_jsonl(history_path, missing_ok=True))

    def log_new_rows(_: SearchContext | None = None) -> None:
        nonlocal written
        for q in evaluator.history[written:]:  # also catches up a row lost to a kill after the state save
            info = evaluator.info.get(q.arch, {})
            row = {"i": q.index - 1, "arch": space.format(q.arch), **{k: info.get(k) for k in ROW_KEYS}}
            append_jsonl(history_path, row)
            log_metrics({"val_acc": q.value, "test_acc": info.get("test_acc"), "best_val_acc": evaluator.best().value})
        written = len(evaluator.history)

    result = run_search(
        build_method("random", space, {"batch": batch}),
        evaluator,
        budget=n,
        seed=seed,
        state_path=run_dir() / STATE,
        progress=True,
        on_round=log_new_rows,
    )
    log_new_rows()
    best = evaluator.best()  # highest val_acc (earliest on ties)
    return {
        "best_arch": space.format(best.arch),
        "best_val_acc": best.value,
        "best_test_acc": evaluator.info[best.arch]["test_acc"],
        "n_evaluated": result.n_queries,
        "wall_s": sum(evaluator.info[q.arch]["wall_s"] for q in result.history),
    }
