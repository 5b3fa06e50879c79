"""Evaluation: everything that measures an architecture. Real training (``train_eval``), CPU
latency and costs (``latency``, ``measure``), and the evaluators that search loops query."""
from nag.evaluation.evaluators import (
    EVALUATORS,
    Evaluator,
    EvaluatorProtocol,
    Query,
    TableEvaluator,
    TrainEvalEvaluator,
    build_evaluator,
    list_evaluators,
)
from nag.evaluation.training import TrainBudget, train_eval, train_eval_model

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "EvaluatorProtocol",
    "Query",
    "TableEvaluator",
    "TrainBudget",
    "TrainEvalEvaluator",
    "build_evaluator",
    "list_evaluators",
    "train_eval",
    "train_eval_model",
]
