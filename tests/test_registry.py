"""nag.registry.Registry: lookups, errors that name the known choices and both claimants, fnmatch
listing, and duplicate detection across code and entry points."""
from __future__ import annotations

import fnmatch
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.errors import ConfigError, DuplicateNameError, UnknownNameError
from nag.registry import Registry
from nag.schema import check_settings


def make_dist(root: Path, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str] = {}) -> Path:
    """A minimal installed distribution in ``root`` (what pip would leave in site-packages)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def unique_group() -> str:
    return f"nag.test_{uuid.uuid4().hex[:8]}"


class Alpha:
    pass


class Beta:
    pass


def test_register_get_build():
    reg: Registry = Registry("widget", group=unique_group())
    reg.register("alpha", Alpha)

    @reg.register("beta")
    class B(Beta):
        pass

    assert reg.get("alpha") is Alpha
    assert isinstance(reg.build("beta"), B)
    assert "alpha" in reg and "gamma" not in reg
    assert reg.source("alpha").endswith(":Alpha")


def test_unknown_name_lists_known_names_and_group():
    group = unique_group()
    reg: Registry = Registry("widget", group=group)
    reg.register("alpha", Alpha)
    reg.register("beta", Beta)
    with pytest.raises(UnknownNameError, match="unknown .* 'gamma'. Known .*: alpha, beta") as info:
        reg.get("gamma")
    msg = str(info.value)
    assert "'gamma'" in msg and "alpha, beta" in msg and group in msg
    assert isinstance(info.value, KeyError)  # still catchable as a KeyError


def test_unknown_space_lists_builtin_spaces():
    from nag.spaces import get_space, list_spaces

    with pytest.raises(UnknownNameError, match="unknown search space 'nb2001'. Known search spaces: .*nb201") as info:
        get_space("nb2001")
    for name in list_spaces():
        assert name in str(info.value)
    assert "nb201" in list_spaces()


def test_duplicate_name_names_both_sources():
    reg: Registry = Registry("widget", group=unique_group())
    reg.register("alpha", Alpha)
    with pytest.raises(DuplicateNameError, match="name 'alpha' is claimed twice: by .*Rename one of them") as info:
        reg.register("alpha", Beta)
    msg = str(info.value)
    assert f"{__name__}:Alpha" in msg and f"{__name__}:Beta" in msg and "'alpha'" in msg


def test_registering_the_same_object_twice_is_fine():
    reg: Registry = Registry("widget", group=unique_group())
    reg.register("alpha", Alpha)
    reg.register("alpha", Alpha)
    assert reg.names() == ["alpha"]


def test_names_filters_with_fnmatch():
    reg: Registry = Registry("widget", group=unique_group())
    for name in ("nb201", "nb101", "mbv3", "darts"):
        reg.register(name, type(name, (), {}))
    assert reg.names() == ["darts", "mbv3", "nb101", "nb201"]
    assert reg.names("nb*") == ["nb101", "nb201"]
    assert reg.names("*3") == ["mbv3"]
    assert reg.names("nb?01") == ["nb101", "nb201"]
    assert reg.names("zzz*") == []


@settings(max_examples=40, deadline=None)
@given(
    names=st.sets(st.text(alphabet="abc01_", min_size=1, max_size=5), max_size=8),
    pattern=st.text(alphabet="abc01_*?", min_size=1, max_size=4),
)
def test_names_agrees_with_fnmatch(names, pattern):
    reg: Registry = Registry("widget", group=unique_group())
    for name in names:
        reg.register(name, type(f"C_{name}", (), {}))
    assert reg.names(pattern) == sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def test_entry_point_is_found_lazily(tmp_path, monkeypatch):
    group = unique_group()
    make_dist(
        tmp_path / "site",
        "nag-test-widgets",
        {group: {"gamma": "nag_test_widget_mod:Gamma"}},
        {"nag_test_widget_mod": "class Gamma:\n    pass\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reg: Registry = Registry("widget", group=group)
    reg.register("alpha", Alpha)
    assert reg.names() == ["alpha", "gamma"]
    assert "nag-test-widgets" in reg.source("gamma")
    assert reg.get("gamma").__name__ == "Gamma"


def test_entry_point_claiming_a_builtin_name_is_an_error_naming_both(tmp_path, monkeypatch):
    group = unique_group()
    make_dist(tmp_path / "site", "nag-test-clash", {group: {"alpha": "somewhere_else:Alpha"}})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reg: Registry = Registry("widget", group=group)
    reg.register("alpha", Alpha)
    with pytest.raises(DuplicateNameError, match="is claimed twice: by .*Rename one of them") as info:
        reg.names()
    msg = str(info.value)
    assert f"{__name__}:Alpha" in msg and "somewhere_else:Alpha" in msg and "nag-test-clash" in msg


def test_two_distributions_claiming_one_name_is_an_error_naming_both(tmp_path, monkeypatch):
    group = unique_group()
    make_dist(tmp_path / "a", "nag-test-first", {group: {"delta": "first_mod:Delta"}})
    make_dist(tmp_path / "b", "nag-test-second", {group: {"delta": "second_mod:Delta"}})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    reg: Registry = Registry("widget", group=group)
    with pytest.raises(DuplicateNameError, match="'delta' is claimed twice: by .*Rename one of them") as info:
        reg.get("delta")
    msg = str(info.value)
    assert "first_mod:Delta" in msg and "second_mod:Delta" in msg


def test_entry_point_announcing_the_registered_object_itself_is_not_a_duplicate(tmp_path, monkeypatch):
    group = unique_group()
    make_dist(tmp_path / "site", "nag-test-self", {group: {"alpha": f"{__name__}:Alpha"}})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reg: Registry = Registry("widget", group=group)
    reg.register("alpha", Alpha)
    assert reg.names() == ["alpha"] and reg.get("alpha") is Alpha


def test_reload_finds_a_plugin_installed_after_the_first_lookup(tmp_path, monkeypatch):
    group = unique_group()
    reg: Registry = Registry("widget", group=group)
    assert reg.names() == []  # entry points read once, nothing there yet
    make_dist(
        tmp_path / "site",
        "nag-test-late",
        {group: {"late": "nag_test_late_mod:Late"}},
        {"nag_test_late_mod": "class Late:\n    pass\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert reg.names() == []  # cached until asked to reload
    reg.reload_entry_points()
    assert reg.names() == ["late"]
    assert reg.get("late").__name__ == "Late"


def test_build_refuses_a_setting_the_factory_does_not_take_and_suggests_one():
    reg: Registry = Registry("widget")

    @reg.register("w")
    def widget(space, size: int = 1, *, colour: str = "red"):
        return (space, size, colour)

    assert reg.build("w", "s", size=2, colour="blue") == ("s", 2, "blue")
    with pytest.raises(ConfigError, match=r"widget 'w' has no setting 'sise'; it accepts: size, colour. Did you mean 'size'\?"):
        reg.build("w", "s", sise=2)
    with pytest.raises(ConfigError, match="it accepts: colour"):  # the positional args are not settings
        check_settings("widget", widget, {"space": 1}, skip=2)


def test_build_refuses_a_value_the_annotation_does_not_accept():
    reg: Registry = Registry("widget")

    @reg.register("w")
    def widget(space, size: int = 1, *, colour: str = "red"):
        return (space, size, colour)

    with pytest.raises(ConfigError, match=r"widget 'w': setting 'size' = 'big' is not accepted: expected an int\."):
        reg.build("w", "s", size="big")
    assert reg.build("w", "s", size=3.0) == ("s", 3, "red")  # validated values reach the factory


def test_factories_taking_kwargs_are_not_checked():
    check_settings("anything", lambda **kw: kw, {"whatever": 1})
    check_settings("a builtin", dict, {"whatever": 1})
