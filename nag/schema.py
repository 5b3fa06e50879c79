"""Typed settings, checked in one place: pydantic models and the signatures of registered factories.

Every setting nag reads, from a config file, the command line or a library call, is checked by
pydantic against one declaration:

- **Settings models** (``Settings`` subclasses such as ``TrainBudget`` and ``TrainerSettings``)
  declare their fields with types, ranges (``Field(ge=1)``) and ``Literal`` choices.
- **Factories** (search spaces, tasks, solvers, guides, pool optimisers, ...) declare their
  settings in their signature: ``steps: Annotated[int, Field(ge=1)] = 15``. ``signature_model``
  turns a signature into a pydantic model, so the config schema of a plugin group (``space``,
  ``task``, ``solver``, ...) is built from the registered factory itself; ``checked`` validates
  direct calls of a factory against the same signature.

A failed check is a ``ConfigError`` with one line that names the key, the value given and what is
accepted (``explain``); an unknown key names the accepted keys and the closest match.
"""
from __future__ import annotations

import builtins
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator, validate_call
from pydantic.fields import FieldInfo

from nag.errors import ConfigError

__all__ = [
    "FactoryConfig",
    "PluginConfig",
    "Settings",
    "accepted_keys",
    "check_settings",
    "checked",
    "describe",
    "explain",
    "factory_config",
    "plain",
    "signature_defaults",
    "signature_model",
    "validate",
]


def plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts/lists (resolved); anything else unchanged."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return value
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class Settings(BaseModel):
    """A frozen settings model: unknown keys are refused, and a bad value is a one-line ConfigError.

    ``Settings(**kw)`` raises ConfigError; nested in a larger model, it reports through that model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(explain(exc, type(self), data, what=_settings_name(type(self)))) from None

    # Nested in a larger model, validate as a plain model (errors nest with their full key path)
    # instead of calling __init__ (pydantic would wrap the ConfigError as one opaque value error).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def from_any(cls, value: Any = None) -> Any:
        """None (the defaults), a mapping / DictConfig of fields, or an instance."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        value = plain(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_settings_name(cls)} must be a mapping of {', '.join(cls.model_fields)}; got {value!r}")
        return cls(**dict(value))

    def with_(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied (checked like the original)."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _settings_name(cls: type) -> str:
    return getattr(cls, "settings_name", None) or cls.__name__


def validate(model: type[BaseModel], data: Mapping[str, Any], what: str = "", prefix: str = "") -> BaseModel:
    """``model.model_validate(data)``; a failure is a one-line ConfigError (see ``explain``)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(explain(exc, model, data, what=what, prefix=prefix)) from None


class FactoryConfig(BaseModel):
    """A config block holding a factory's keyword settings (``diversity:`` for DiversityGuide, ...).

    The block's own fields (declared on the subclass) are checked by pydantic as usual; every other
    key is checked against the signature of ``factory_for(data)`` (``signature_model``), so the
    schema of the settings is the factory itself. Validated data holds the given settings plus the
    factory's defaults that a config file can hold (so a run's config.yaml shows what ran).
    """

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    kind: ClassVar[str] = "factory"  # what the factory makes, for messages ("search space")
    skip: ClassVar[int] = 0  # leading factory parameters that are not settings
    exclude: ClassVar[tuple[str, ...]] = ()  # factory parameters a config never sets

    @classmethod
    def factory_for(cls, data: Mapping[str, Any]) -> Callable[..., Any] | None:
        raise NotImplementedError

    @classmethod
    def settings_model_for(cls, data: Mapping[str, Any]) -> type[BaseModel] | None:
        factory = cls.factory_for(data)
        return None if factory is None else signature_model(factory, cls.skip, (*cls.exclude, *cls.model_fields))

    @classmethod
    def describe_plugin(cls, data: Mapping[str, Any]) -> str:
        return cls.kind

    @model_validator(mode="wrap")
    @classmethod
    def _check_settings(cls, data: Any, handler: Any) -> Any:
        data = plain(data)
        if isinstance(data, Mapping):
            factory = cls.factory_for(data)
            model = cls.settings_model_for(data) if factory is not None else None
            if model is not None:
                own = set(cls.model_fields)
                settings = {k: v for k, v in data.items() if k not in own}
                instance = model.model_validate(settings)  # errors nest under this block's key
                extra = instance.model_extra or {}
                given = {k: extra[k] if k in extra else getattr(instance, k) for k in settings}
                defaults = signature_defaults(factory, cls.skip, (*cls.exclude, *own))
                defaults = {k: v for k, v in defaults.items() if v != "???"}
                data = {**{k: v for k, v in data.items() if k in own}, **defaults, **given}
        return handler(data)

    def settings(self) -> dict[str, Any]:
        """The factory's keyword arguments: every key but the block's own fields."""
        return dict(self.model_extra or {})


class PluginConfig(FactoryConfig):
    """``{name: <registered name>, **settings}`` of a plugin group (space, task, solver, ...): the
    settings are checked against the signature of the factory registered under ``name``, so a
    plugin's schema is its constructor. Subclasses set ``kind`` and ``factory(name)`` (a registry
    lookup, which names the known plugins for an unknown name)."""

    name: str

    @classmethod
    def factory(cls, name: str) -> Callable[..., Any]:
        raise NotImplementedError

    @classmethod
    def factory_for(cls, data: Mapping[str, Any]) -> Callable[..., Any] | None:
        name = data.get("name")
        return cls.factory(name) if isinstance(name, str) else None

    @classmethod
    def describe_plugin(cls, data: Mapping[str, Any]) -> str:
        return f"{cls.kind} {data.get('name')!r}"


def factory_config(
    factory: Callable[..., Any], *, kind: str, skip: int = 0, exclude: Sequence[str] = (), **fields: Any
) -> type[FactoryConfig]:
    """A ``FactoryConfig`` class whose settings are ``factory``'s (after ``skip`` positional
    parameters, minus ``exclude``); ``fields`` (``name=(type, default)``) are the block's own keys.

    ``DatasetEncoderConfig = factory_config(ImageFeatureExtractor, kind="dataset encoder")``.
    """
    namespace: dict[str, Any] = {
        "__annotations__": {k: tp for k, (tp, _) in fields.items()},
        **{k: default for k, (_, default) in fields.items() if default is not ...},
        "kind": kind,
        "skip": skip,
        "exclude": tuple(exclude),
        "factory_for": classmethod(lambda cls, data: factory),
        "__module__": getattr(factory, "__module__", __name__),
    }
    name = "".join(w.title() for w in kind.replace("-", " ").split()) + "Config"
    return type(name, (FactoryConfig,), namespace)  # type: ignore[return-value]


# ----- models from signatures ------------------------------------------------------------------
def _globals_of(fn: Any) -> dict[str, Any]:
    target = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.isclass(target):
        target = target.__init__
    return dict(getattr(inspect.unwrap(target), "__globals__", {}))


def _resolve(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """A parameter's annotation as a type (string annotations evaluated); Any when it cannot be."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            return eval(annotation, {**vars(builtins), **namespace})  # noqa: S307 - the module's own annotation
        except Exception:  # noqa: BLE001 - a name imported only for type checkers
            return Any
    return annotation


def _parameters(fn: Any, skip: int) -> tuple[list[inspect.Parameter], bool, dict[str, Any]]:
    """(named parameters after ``skip``, whether **kwargs is taken, resolved annotations)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    namespace = _globals_of(fn)
    named = [p for p in params[skip:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    hints = {p.name: _resolve(p.annotation, namespace) for p in named}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    target = getattr(fn, "forwards_kwargs_to", None)
    if var_kw and target is not None:  # **kwargs documented as another factory's settings
        more, var_kw, more_hints = _parameters(target, 0)
        seen = {p.name for p in params}  # the forwarder passes these itself
        named += [p for p in more if p.name not in seen]
        hints.update({k: v for k, v in more_hints.items() if k not in seen})
    return named, var_kw, hints


@functools.lru_cache(maxsize=None)
def _signature_model(fn: Any, skip: int, exclude: frozenset[str]) -> type[BaseModel] | None:
    try:
        named, var_kw, hints = _parameters(fn, skip)
    except (TypeError, ValueError):  # no signature (some builtins): nothing to check against
        return None
    fields: dict[str, Any] = {}
    for p in named:
        if p.name in exclude:
            continue
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], default)
    name = getattr(fn, "__qualname__", None) or getattr(getattr(fn, "func", None), "__qualname__", "factory")
    config = ConfigDict(extra="allow" if var_kw else "forbid", arbitrary_types_allowed=True, protected_namespaces=())
    try:
        return create_model(f"{name.replace('.', '_')}_settings", __config__=config, **fields)
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot read: accept any value there
        return create_model(
            f"{name.replace('.', '_')}_settings", __config__=config, **{k: (Any, d) for k, (_, d) in fields.items()}
        )


def signature_model(fn: Callable[..., Any], skip: int = 0, exclude: Sequence[str] = ()) -> type[BaseModel] | None:
    """A pydantic model of ``fn``'s keyword settings (parameters after the first ``skip``, minus
    ``exclude``): annotations are the field types, defaults the defaults. A factory that takes
    ``**kwargs`` accepts unknown keys (unless it names where they go in ``forwards_kwargs_to``).
    None when ``fn`` has no signature."""
    try:
        return _signature_model(fn, skip, frozenset(exclude))
    except TypeError:  # unhashable callable: no caching
        return _signature_model.__wrapped__(fn, skip, frozenset(exclude))


def accepted_keys(fn: Callable[..., Any], skip: int = 0, exclude: Sequence[str] = ()) -> list[str]:
    """The keyword settings ``fn`` accepts, in signature order."""
    model = signature_model(fn, skip, exclude)
    return list(model.model_fields) if model is not None else []


def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_like(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def signature_defaults(fn: Callable[..., Any], skip: int = 0, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``{setting: default}`` of ``fn`` for the defaults a config file can hold; ``"???"`` (Hydra's
    'must be given') for a setting without a default."""
    model = signature_model(fn, skip, exclude)
    out: dict[str, Any] = {}
    for name, field in (model.model_fields.items() if model is not None else ()):
        if field.is_required():
            out[name] = "???"
        elif _json_like(field.default):
            out[name] = list(field.default) if isinstance(field.default, tuple) else field.default
    return out


def check_settings(what: str, fn: Callable[..., Any], settings: Mapping[str, Any], skip: int = 0) -> dict[str, Any]:
    """``settings`` checked against ``fn``'s signature (``skip`` leading parameters are not
    settings); returns them validated (e.g. ints as floats where a float is declared).

    A setting ``fn`` does not take, or a value its annotation refuses, is a ConfigError.
    """
    model = signature_model(fn, skip)
    if model is None:
        return dict(settings)
    try:
        instance = model.model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError(explain(exc, model, settings, what=what)) from None
    extra = instance.model_extra or {}
    return {k: extra[k] if k in extra else getattr(instance, k) for k in settings}


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Validate every call of ``fn`` against its annotations (``Annotated[int, Field(ge=1)]``, ...);
    a bad argument is a one-line ConfigError. Works on functions and ``__init__`` methods."""
    validated = validate_call(config=ConfigDict(arbitrary_types_allowed=True))(fn)
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    is_method = bool(names) and names[0] == "self"
    owner = fn.__qualname__.rsplit(".", 2)[-2] if is_method and "." in fn.__qualname__ else fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return validated(*args, **kwargs)
        except ValidationError as exc:
            try:
                bound = sig.bind(*args, **kwargs).arguments
            except TypeError:
                bound = dict(kwargs)
            model = signature_model(fn, skip=1 if is_method else 0)
            errors = [
                {**e, "loc": (names[e["loc"][0]], *e["loc"][1:]) if e["loc"] and isinstance(e["loc"][0], int) else e["loc"]}
                for e in exc.errors()
            ]
            raise ConfigError(_explain_errors(errors, model, bound, what=owner, prefix="")) from None

    return wrapper


# ----- one-line messages -----------------------------------------------------------------------
def explain(exc: ValidationError, model: Any, data: Any = None, what: str = "", prefix: str = "") -> str:
    """One line for the first problem of ``exc``: the key, the value given and what is accepted.

    ``model`` and ``data`` are what was validated (to name the accepted values); ``what`` names the
    thing being configured for unknown keys (``"solver 'ode'"``); ``prefix`` is the config path of
    ``data`` (``"trainer"``).
    """
    return _explain_errors(exc.errors(), model, data, what=what, prefix=prefix)


def _explain_errors(errors: list[dict[str, Any]], model: Any, data: Any, what: str, prefix: str) -> str:
    first = errors[0]
    path, field, owner, owner_data, owner_what = _locate(model, data, first["loc"])
    key = ".".join([p for p in [prefix] if p] + [str(p) for p in path])
    if first["type"] == "extra_forbidden":
        return _unknown_key(key, path, owner, owner_data, owner_what or what, prefix)
    if first["type"] == "missing":
        expected = describe(field.annotation, field.metadata) if field is not None else "a value"
        return f"config key {key!r} is missing: give it a value ({expected})."
    value = first.get("input")
    same = [e for e in errors if tuple(e["loc"][: len(path)]) == tuple(path)]
    if first["type"] in ("value_error", "assertion_error") and len(same) == 1:
        message = str(first.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not path:  # a rule across the keys of a block
            return f"{'config key ' + repr(key) if key else what or 'config'}: {message}"
        where = f"{what}: setting {key!r}" if what and not prefix else f"config key {key!r}"
        return f"{where} = {_show(value)}: {message}"
    expected = describe(field.annotation, field.metadata) if field is not None else str(first.get("msg", "")).lower()
    where = f"{what}: setting {key!r}" if what and not prefix else f"config key {key!r}"
    return f"{where} = {_show(value)} is not accepted: expected {expected}."


def _show(value: Any) -> str:
    text = repr(plain(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key(key: str, path: list[Any], owner: Any, owner_data: Any, what: str, prefix: str) -> str:
    model, extra_keys = owner
    accepted = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    accepted += [k for k in extra_keys if k not in accepted]
    bad = str(path[-1]) if path else key
    close = difflib.get_close_matches(bad, accepted, n=1)
    if what:
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"{what} has no setting {bad!r}; it accepts: {', '.join(accepted) or '(none)'}.{hint}"
    level = key.rpartition(".")[0]
    where = f"under {level!r}" if level else "at the top level"
    hint = f" Did you mean {(level + '.' if level else '') + close[0]!r}?" if close else ""
    return f"unknown config key {key!r}. Valid keys {where}: {', '.join(accepted) or '(none)'}.{hint}"


def _locate(model: Any, data: Any, loc: Sequence[Any]) -> tuple[list[Any], FieldInfo | None, Any, Any, str]:
    """Walk ``loc`` through ``model`` (and ``data`` alongside it): (the config path, the field's
    FieldInfo, the model owning that field, its data, and the name of a plugin owning it)."""
    path: list[Any] = []
    field: FieldInfo | None = None
    owner, owner_data, owner_what = model, data, ""
    tp: Any = model
    extra_keys: list[str] = []
    for part in loc:
        tp = _strip(tp, data)
        plugin = getattr(tp, "settings_model_for", None)
        if plugin is not None and isinstance(data, Mapping) and not (isinstance(part, str) and part in tp.model_fields):
            resolved = plugin(data)  # a plugin group: its schema comes from the named factory
            if resolved is not None:
                owner_what = tp.describe_plugin(data)
                extra_keys = [f for f in tp.model_fields if f != "name"]
                tp = resolved
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner, owner_data = tp, data
            if isinstance(part, str) and part in tp.model_fields:
                field = tp.model_fields[part]
                path.append(part)
                tp, data = field.annotation, _child(data, part)
                if field.metadata:
                    tp = typing.Annotated[(tp, *field.metadata)]  # noqa: UP006 - keep the constraints
                continue
            if isinstance(part, str) and tp.model_config.get("extra") != "forbid":
                path.append(part)
                field, tp, data = None, Any, _child(data, part)
                continue
            return path + [part], field, (owner, extra_keys), owner_data, owner_what
        origin = get_origin(tp)
        if isinstance(part, int) and origin in (list, tuple, Sequence, typing.Sequence, set, frozenset):
            args = get_args(tp)
            path.append(part)
            tp, data = (args[0] if args else Any), _child(data, part)
            field = FieldInfo.from_annotation(tp)
            continue
        if origin in (dict, Mapping, typing.Mapping) and not (isinstance(part, str) and part.startswith(("function-", "json-"))):
            args = get_args(tp)
            path.append(part)
            tp, data = (args[1] if len(args) == 2 else Any), _child(data, part)
            field = FieldInfo.from_annotation(tp)
            continue
        break  # a union branch tag or a validator's name: the field itself is the place
    if field is None and path:
        field = FieldInfo.from_annotation(tp) if tp is not Any else None
    return path, field, (owner, extra_keys), owner_data, owner_what


def _child(data: Any, part: Any) -> Any:
    try:
        return data[part]
    except (KeyError, IndexError, TypeError):
        return None


def _strip(tp: Any, data: Any) -> Any:
    """Annotated / Optional / a union with one model: the model class (to walk into it)."""
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        models = [a for a in get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and isinstance(data, Mapping):
            return models[0]
    return tp


# ----- what a type accepts, in words --------------------------------------------------------------
_BOUNDS = ((at.Ge, "ge", ">="), (at.Gt, "gt", ">"), (at.Le, "le", "<="), (at.Lt, "lt", "<"))


def _bounds(metadata: Sequence[Any]) -> str:
    parts = []
    for m in metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(m, cls):
                parts.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, at.Interval):
            for _, attr, sign in _BOUNDS:
                if getattr(m, attr, None) is not None:
                    parts.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, FieldInfo):
            parts.append(_bounds(m.metadata))
    return " and ".join(p for p in parts if p)


def _join(parts: list[str]) -> str:
    parts = list(dict.fromkeys(p for p in parts if p))
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def describe(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """What values of type ``tp`` (with ``Field`` constraints in ``metadata``) look like, in words:
    ``describe(Annotated[int, Field(ge=1)])`` is ``"an int >= 1"``."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = get_args(tp)
        return describe(base, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return _join(parts)
    if origin is Literal:
        values = [repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for v in get_args(tp)]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    bounds = _bounds(metadata)
    suffix = f" {bounds}" if bounds else ""
    if origin in (list, tuple, set, frozenset, Sequence, typing.Sequence):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = describe(args[0]) if args else "values"
        return f"a list of {_plural(inner)}{suffix}"
    if origin in (dict, Mapping, typing.Mapping):
        return "a mapping"
    if origin is not None and origin in (Callable, typing.Callable) or tp is Callable:
        return "a callable"
    if tp is bool:
        return "true or false"
    if tp is int:
        return f"an int{suffix}"
    if tp is float:
        return f"a number{suffix}"
    if tp is str:
        return f"a string{suffix}"
    if tp is type(None):
        return "null"
    if tp is Any or tp is None:
        return "any value"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"a mapping with keys {', '.join(tp.model_fields)}"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            head, _, rest = text[len(article):].partition(" ")
            return f"{head}s {rest}".strip()
    return text


def describe_difference(a: dict, b: dict, label: str = "asked") -> str:
    """``space.N=1 (asked: 3), train.max_steps=40 (asked: 200)``: the leaves where ``a`` and ``b`` differ
    (``label`` names ``b``)."""
    def leaves(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    la, lb = leaves(a), leaves(b)
    diff = [f"{k}={la.get(k)!r} ({label}: {lb.get(k)!r})" for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)]
    return ", ".join(diff) or "the same settings"


def space_difference(built_with: dict | None, options: dict) -> str | None:
    """How a run's space ``options`` (e.g. ``{"C": 8, "N": 1}``) differ from the ``space`` that
    ``built_with`` records (``space.N=3 (this run: 1)``); None when they agree or nothing is recorded."""
    learned = (built_with or {}).get("space")
    if learned is None or dict(learned) == dict(options):
        return None
    return describe_difference({"space": dict(learned)}, {"space": dict(options)}, label="this run")
