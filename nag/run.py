"""Command line: ``python -m nag.run experiment=<name> [group=option ...] [key=value ...]``.

Hydra (1.3) composes ``config.yaml`` with ``experiment/<name>.yaml`` from nag's config folder
(``nag.config_files.config_dir``: the package's own copy in a wheel, the repository's
``experiments/`` in a clone); :func:`nag.experiments.run_experiment` runs it and writes
``config.yaml`` and ``results.json`` into ``hydra.run.dir``. Before Hydra runs, nag composes the
same config itself and validates it against the experiment's schema, so that a misspelled
experiment, option or key, a wrong type or an out-of-range value is a short message (exit code
2) naming the accepted choices instead of a traceback. Errors raised by nag inside an experiment
(``NagError``) are reported the same way; ``NAG_TRACEBACK=1`` shows the full traceback instead.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nag.config_files import CONFIG_NAME

EXIT_USAGE = 2
_TRACEBACK_ENV = "NAG_TRACEBACK"


class CliError(Exception):
    """A usage error: printed as ``error: <message>``, exit code 2."""


# ----- where the configs are ------------------------------------------------------------------
def config_dir() -> Path:
    """nag's primary config folder (``nag.config_files.config_dir``); CliError when there is none."""
    from nag.config_files import config_dir as find
    from nag.errors import ConfigError

    try:
        return find()
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def _user_config_dirs(overrides: Iterable[str]) -> list[Path]:
    """Folders named by a ``hydra.searchpath=[file://...]`` override (for --help)."""
    dirs: list[Path] = []
    for arg in overrides:
        if arg.lstrip("+").startswith("hydra.searchpath="):
            for item in re.findall(r"file://([^,\]'\"]+)", arg):
                dirs.append(Path(item))
    return dirs


# ----- --help -------------------------------------------------------------------------------
def _description(path: Path) -> str:
    """First comment line of a yaml file that is not the ``@package`` header."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def _group_options(dirs: Sequence[Path]) -> dict[str, dict[str, Path]]:
    """group -> option -> yaml file, over every config folder (later folders do not shadow)."""
    groups: dict[str, dict[str, Path]] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            for yaml in sorted(sub.glob("*.yaml")):
                groups.setdefault(sub.name, {}).setdefault(yaml.stem, yaml)
    return groups


def _defaults(primary: Path) -> dict[str, str]:
    import yaml

    out: dict[str, str] = {}
    for item in (yaml.safe_load((primary / f"{CONFIG_NAME}.yaml").read_text()) or {}).get("defaults", []):
        if isinstance(item, dict):
            for key, value in item.items():
                if not str(key).startswith("override"):
                    out[str(key)] = str(value)
    return out


def _availability(yaml: Path) -> str:
    """'' when the experiment's function can run here, else a short reason."""
    import importlib.util

    from omegaconf import OmegaConf

    from nag.experiments import _BUILTINS, EXPERIMENTS

    try:
        cfg = OmegaConf.load(yaml)
        runner = str(cfg.get("runner") or cfg.get("name") or yaml.stem)
    except Exception:  # noqa: BLE001 - help must not fail on a broken user file
        return " (unreadable yaml)"
    if runner in _BUILTINS:
        return "" if importlib.util.find_spec(_BUILTINS[runner]) is not None else " (not available yet)"
    return "" if runner in EXPERIMENTS else f" (no experiment function {runner!r} registered)"


def _registered_without_yaml(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Spaces and tasks registered (built in or by plugins) that have no YAML option: they are
    options too (``space=<name>``), built from the constructor's defaults."""
    from nag.data import list_tasks
    from nag.spaces import list_spaces

    out = {}
    for group, names in (("space", list_spaces()), ("task", list_tasks())):
        extra = [n for n in names if n not in groups.get(group, {})]
        if extra:
            out[group] = extra
    return out


def usage(overrides: Sequence[str] = ()) -> str:
    """The short help text: experiments with their description, config groups and examples."""
    primary = config_dir()
    dirs = [primary, *_user_config_dirs(overrides)]
    groups = _group_options(dirs)
    experiments = groups.pop("experiment", {})
    defaults = _defaults(primary)
    width = max([len(n) for n in experiments] + [8]) + 2
    lines = [
        "usage: python -m nag.run experiment=<name> [group=option ...] [key=value ...] [hydra flags]",
        "",
        "experiments (experiment=<name>):",
    ]
    lines += [f"  {n:<{width}}{_description(p)}{_availability(p)}" for n, p in experiments.items()]
    lines += ["", "config groups (group=option):"]
    for group, names in _registered_without_yaml(groups).items():
        groups.setdefault(group, {}).update(dict.fromkeys(names))
    for group, options in groups.items():
        default = f"  [default: {defaults[group]}]" if group in defaults else ""
        lines.append(f"  {group:<{width}}{', '.join(options)}{default}")
    lines += [
        "",
        "common keys: seed=0  wandb.mode=offline|online|disabled  hydra.run.dir=<folder>",
        "",
        "examples:",
        "  python -m nag.run experiment=random_search space=nb201 task=digits budget=3",
        "  python -m nag.run experiment=evaluate arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|' train.epochs=5",
        "  python -m nag.run experiment=evaluate --cfg job        # print the composed config, run nothing",
        "  python -m nag.run hydra.searchpath=[file:///abs/my_configs] experiment=my_exp",
        "",
        f"configs: {primary}   docs: docs/cli.md   full traceback on errors: {_TRACEBACK_ENV}=1",
    ]
    return "\n".join(lines)


# ----- override parsing ----------------------------------------------------------------------
def _split_args(argv: Sequence[str]) -> tuple[Any, list[str]]:
    """Hydra's own argument parser: (flags namespace, overrides)."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(list(argv))
    return args, list(args.overrides or [])


def _quote_if_needed(arg: str) -> str:
    """``key=|a~0|+...`` -> ``key='|a~0|+...'``: arch strings hold characters Hydra's grammar
    refuses unquoted. Only an override that fails to parse and has no quotes is rewritten."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        parser.parse_overrides([arg])
        return arg
    except OverrideParseException as exc:
        key, sep, value = arg.partition("=")
        if sep and value and not re.search(r"['\"]", value) and re.fullmatch(r"[+~]{0,2}[\w.@/-]+", key):
            quoted = f"{key}='{value}'"
            try:
                parser.parse_overrides([quoted])
                return quoted
            except OverrideParseException:
                pass
        first = str(exc).strip().splitlines()[0]
        raise CliError(
            f"cannot parse the override {arg!r} ({first}). Write overrides as key=value; quote values "
            f"with special characters as key='value' (in a shell: \"key='value'\")."
        ) from exc


def _validation_sets(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Override lists to compose: one per value of every sweep (multirun), else the list itself."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)

    def first(o: Any) -> str | None:
        if not o.is_sweep_override():
            return o.input_line
        if o.is_interval_sweep():
            return None  # a sweeper plugin samples it; nothing to check here
        value = next(iter(o.sweep_string_iterator()), None)
        return None if value is None else f"{o.get_key_element()}={value}"

    base = [first(o) for o in parsed]
    sets = [[s for s in base if s is not None]]
    for i, o in enumerate(parsed):
        if o.is_sweep_override() and not o.is_interval_sweep():
            for value in list(o.sweep_string_iterator())[1:]:
                line = base.copy()
                line[i] = f"{o.get_key_element()}={value}"
                sets.append([s for s in line if s is not None])
    return sets


# ----- composing and explaining what is wrong ---------------------------------------------------
_PLUGIN_KEY = re.compile(r"^(space|task)(?:\.name)?=(.+)$")


def prepare_overrides(overrides: Sequence[str], primary: Path | None = None) -> list[str]:
    """Register the config nodes nag generates (``nag.experiments.config.register_config_nodes``)
    and make a registered space or task usable by name alone.

    ``space=<name>`` needs no YAML option: a registered space without one gets a generated option
    (``{name, **constructor defaults}``). ``space.name=<name>`` is read as ``space=<name>``, so the
    other keys come from that space's option, not the previous one's. The same holds for ``task``.
    """
    from nag.experiments.config import register_config_nodes, register_plugin_option

    register_config_nodes()
    primary = primary or config_dir()
    dirs = [primary, *_user_config_dirs(overrides)]
    options = _group_options(dirs)
    explicit = {o.partition("=")[0] for o in overrides}
    out = []
    for arg in overrides:
        m = _PLUGIN_KEY.match(arg)
        if m:
            group, value = m.group(1), m.group(2)
            if arg.startswith(f"{group}.name=") and group not in explicit:
                arg = f"{group}={value}"  # the named plugin's own option, with its own keys
            if arg.startswith(f"{group}="):
                for name in value.split(","):  # a sweep names several
                    name = name.strip().strip("'\"")
                    if name and name not in options.get(group, {}):
                        register_plugin_option(group, name)
        out.append(arg)
    return out


def _compose(overrides: list[str], primary: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from nag.experiments.config import register_config_nodes

    register_config_nodes()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(primary), version_base="1.3", job_name="nag"):
            return compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""


def _missing_option(group: str, option: str, options: Sequence[str]) -> str:
    what = "experiment" if group == "experiment" else f"{group} option"
    listed = ", ".join(options) if options else "(none)"
    return f"unknown {what} {option!r} ({group}={option}). Available for {group}=: {listed}.{_did_you_mean(option, options)}"


def _unknown_key(key: str, overrides: list[str], primary: Path) -> str:
    """Explain a key that is not in the config: the valid keys at that level, close matches."""
    from omegaconf import OmegaConf

    rest = [o for o in overrides if o.lstrip("+~").partition("=")[0] != key]
    cfg = None
    for _ in range(len(rest) + 1):  # drop further bad overrides until the rest composes
        try:
            cfg = _compose(rest, primary)
            break
        except Exception as exc:  # noqa: BLE001
            m = re.search(r"Could not override '([^']+)'", str(exc))
            if not m:
                break
            rest = [o for o in rest if o.lstrip("+~").partition("=")[0] != m.group(1)]
    hint = f" (to add a new key on purpose, write +{key}=...)"
    if cfg is None:
        return f"unknown config key {key!r}{hint}."
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        level = ".".join(parts[:i])
        if not OmegaConf.is_dict(node):
            return f"config key {level!r} holds a value, not keys; {key!r} cannot be set."
        if part not in node:
            keys = [k for k in node.keys() if not (i == 0 and k == "hydra")]
            where = f"under {level!r}" if level else "at the top level"
            return (
                f"unknown config key {key!r}. Valid keys {where}: {', '.join(map(str, keys))}."
                f"{_did_you_mean(part, map(str, keys), f'{level}.' if level else '')}{hint}"
            )
        node = node[part]
    return f"cannot override {key!r}{hint}."


def _explain_composition_error(exc: Exception, overrides: list[str], primary: Path) -> str:
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(exc).strip()
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return _missing_option(group, option, list(exc.options or []))
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the overrides: {text.splitlines()[0]}"
    m = re.search(r"You must specify '([^']+)'", text)
    if m:
        group = m.group(1)
        options = [line.strip() for line in text.splitlines() if line.startswith("\t")]
        return f"no {group} given: add {group}=<name>. Available: {', '.join(options)}."
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return _unknown_key(m.group(1), overrides, primary)
    return text.splitlines()[0] if text else type(exc).__name__


def _check_values(cfg: Any) -> None:
    """Resolve the job config: a missing mandatory value or a broken interpolation is a CliError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    for key in cfg:
        if key == "hydra":
            continue
        try:
            node = cfg[key]
            if OmegaConf.is_config(node):
                OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            full = exc.full_key or key
            raise CliError(f"config key {full!r} has no value (???): set it, e.g. {full}=<value>.") from exc
        except OmegaConfBaseException as exc:
            raise CliError(f"config key {exc.full_key or key!r}: {str(exc).splitlines()[0]}") from exc


def compose_config(overrides: Sequence[str] = (), multirun: bool = False):
    """Compose the config exactly as ``python -m nag.run`` would and validate it against the
    experiment's schema, raising CliError if it cannot.

    Returns the job config (without the ``hydra`` node) of the first job; pass it to
    ``nag.experiments.run_experiment(cfg, out_dir)`` to run it in-process.
    """
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from nag.errors import NagError
    from nag.experiments.config import validate_config

    primary = config_dir()
    overrides = prepare_overrides([_quote_if_needed(o) for o in overrides], primary)
    first = None
    for subset in _validation_sets(overrides, multirun):
        try:
            cfg = _compose(subset, primary)
        except (HydraException, OmegaConfBaseException) as exc:
            raise CliError(_explain_composition_error(exc, subset, primary)) from exc
        _check_values(cfg)
        try:
            validate_config(cfg)  # types, ranges and the plugins' settings, before anything runs
        except NagError as exc:
            raise CliError(str(exc)) from exc
        first = cfg if first is None else first
    with open_dict(first):
        del first["hydra"]
    return first


# ----- running ------------------------------------------------------------------------------
def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _job(cfg: Any) -> None:
    """Hydra's task function: run the experiment, report nag errors briefly."""
    import json

    from nag.errors import NagError
    from nag.experiments import run_experiment

    try:
        results = run_experiment(cfg)
    except NagError as exc:
        if os.environ.get(_TRACEBACK_ENV) == "1":
            raise
        _fail(str(exc))
    from hydra.core.hydra_config import HydraConfig

    from nag.distributed import is_rank_zero

    if not is_rank_zero():  # the other ranks of a DDP / SLURM job wrote nothing
        return
    print(json.dumps(results, indent=2))
    print(f"results: {Path(HydraConfig.get().runtime.output_dir) / 'results.json'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m nag.run`` and the ``nag`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(_TRACEBACK_ENV) == "1":
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        primary = config_dir()
        if "-h" in argv or "--help" in argv:
            print(usage([a for a in argv if not a.startswith("-")]))
            return
        args, overrides = _split_args(argv)
        quoted = prepare_overrides([_quote_if_needed(o) for o in overrides], primary)
        flags = [a for a in argv if a not in overrides]
        custom_config = args.config_path or args.config_dir or args.config_name
        if not (args.hydra_help or args.info or args.shell_completion or custom_config):
            cfg = compose_config(quoted, multirun=bool(args.multirun))
            if not args.cfg:  # about to run: a missing experiment module is a usage error too
                from nag.errors import NagError
                from nag.experiments import get_experiment

                try:
                    get_experiment(str(cfg.get("runner") or cfg.name))
                except NagError as exc:
                    raise CliError(str(exc)) from exc
    except CliError as exc:
        if os.environ.get(_TRACEBACK_ENV) == "1":
            raise
        _fail(str(exc))
    _launch(primary, flags + quoted)


def _launch(primary: Path, argv: list[str]) -> None:
    import hydra

    task = hydra.main(config_path=str(primary), config_name=CONFIG_NAME, version_base="1.3")(_job)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "nag", *argv]
    try:
        task()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
