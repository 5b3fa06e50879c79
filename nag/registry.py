"""Name -> factory registries with lazy discovery of third-party plugins through entry points.

A registry is built in code (``@SPACES.register("nb201")``) and extended by installed
distributions that declare, in their pyproject::

    [project.entry-points."nag.spaces"]
    my_space = "my_pkg.module:MySpace"

Entry points are read on the first lookup, so importing nag stays cheap.
"""
from __future__ import annotations

import fnmatch
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from nag.errors import DuplicateNameError, PluginError, UnknownNameError

T = TypeVar("T")


def _source_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """A name -> factory map for one kind of component.

    Args:
        kind: human name used in messages, e.g. "search space".
        group: entry-point group that third-party packages use, e.g. "nag.spaces".
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, Callable[..., T]] = {}
        self._sources: dict[str, str] = {}
        self._entry_points_loaded = False
        self._from_entry_points: set[str] = set()

    def register(self, name: str, obj: Callable[..., T] | None = None, *, source: str | None = None):
        """Register ``obj`` under ``name``; usable as a decorator."""

        def add(target: Callable[..., T]) -> Callable[..., T]:
            src = source or _source_of(target)
            if name in self._items and self._items[name] is not target:
                raise DuplicateNameError(
                    f"{self.kind} name {name!r} is claimed twice: by {self._sources[name]} "
                    f"and by {src}. Rename one of them (entry-point group {self.group!r})."
                )
            self._items[name] = target
            self._sources[name] = src
            return target

        return add if obj is None else add(obj)

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attr"`` under ``name`` without importing it until first use."""
        if name in self._items and self._sources[name] != target:
            raise DuplicateNameError(
                f"{self.kind} name {name!r} is claimed twice: by {self._sources[name]} and by {target}."
            )
        self._items.setdefault(name, _LazyTarget(name, target))  # type: ignore[arg-type]
        self._sources.setdefault(name, target)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.group is None:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or "unknown distribution"
            src = f"{ep.value} (entry point {ep.name!r} of {dist_name})"
            if ep.name in self._items:
                if self._sources[ep.name].split(" (")[0] == ep.value:
                    continue  # the same object announced twice (e.g. built-in listed in our own pyproject)
                raise DuplicateNameError(
                    f"{self.kind} name {ep.name!r} is claimed twice: by {self._sources[ep.name]} "
                    f"and by {src}. Rename one of them."
                )
            self._items[ep.name] = _LazyEntryPoint(ep)  # type: ignore[assignment]
            self._sources[ep.name] = src
            self._from_entry_points.add(ep.name)

    def reload_entry_points(self) -> None:
        """Forget entry points read so far and read them again (after installing a plugin)."""
        for name in self._from_entry_points:  # loaded or not: a loaded one replaced its lazy wrapper
            self._items.pop(name, None)
            self._sources.pop(name, None)
        self._from_entry_points.clear()
        self._entry_points_loaded = False
        self._load_entry_points()

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``."""
        self._load_entry_points()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}. Known {self.kind}s: {known}. "
                f"Third-party {self.kind}s register under the entry-point group {self.group!r}."
            )
        item = self._items[name]
        if isinstance(item, (_LazyEntryPoint, _LazyTarget)):
            item = item.load()
            self._items[name] = item
        return item

    def build(self, name: str, *args: Any, **settings: Any) -> T:
        """Call the factory registered under ``name`` with ``args`` and ``settings``.

        ``settings`` are checked against the factory's signature (``nag.schema.check_settings``):
        a setting it does not take, or a value its annotation refuses, is a ConfigError.
        """
        from nag.schema import check_settings

        factory = self.get(name)
        settings = check_settings(f"{self.kind} {name!r}", factory, settings, skip=len(args))
        return factory(*args, **settings)

    def source(self, name: str) -> str:
        self.get(name)
        return self._sources[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names, filtered by an fnmatch ``pattern``."""
        self._load_entry_points()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items


class _LazyEntryPoint:
    def __init__(self, ep: Any) -> None:
        self.ep = ep

    def load(self) -> Any:
        try:
            return self.ep.load()
        except Exception as exc:  # surface which plugin is broken, not a bare ImportError
            raise PluginError(
                f"could not load plugin {self.ep.name!r} from {self.ep.value!r}: {exc}. "
                f"Fix or uninstall the distribution that declares it."
            ) from exc


class _LazyTarget:
    """A built-in registered as ``"module:attr"``, imported on first use."""

    def __init__(self, name: str, target: str) -> None:
        self.name, self.target = name, target

    def load(self) -> Any:
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)
