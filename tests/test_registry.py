"""The entry-point registry, with real throwaway distributions on sys.path."""

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import idprops
from idprops import registry
from idprops.registry import PluginWarning, collect_entry_points


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where tests write installed-looking distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()
    for name in [m for m in sys.modules if m.startswith("fake_idprops_plugin")]:
        del sys.modules[name]


def install(folder, dist, module_source, entry_points):
    """Write a module and a dist-info with entry_points.txt, as pip would."""
    (folder / f"{dist}.py").write_text(textwrap.dedent(module_source))
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[idprops.estimators]\n{lines}\n")


PLUGIN = """
from idprops import TwoNNDimension

class HalfTwoNN(TwoNNDimension):
    pass
"""


def test_builtins_are_registered_through_entry_points():
    assert {"mle", "twonn"} <= set(idprops.available_estimators())
    assert idprops.get_estimator("mle") is idprops.MLEDimension
    assert idprops.get_estimator("twonn") is idprops.TwoNNDimension


def test_plugin_is_found_by_name(plugin_dir):
    install(plugin_dir, "fake_idprops_plugin_a", PLUGIN, {"halftwonn": "fake_idprops_plugin_a:HalfTwoNN"})
    cls = idprops.get_estimator("halftwonn")
    assert cls.__name__ == "HalfTwoNN"
    assert "halftwonn" in idprops.available_estimators()
    assert registry.resolve_estimator("halftwonn", discard_fraction=0.2).discard_fraction == 0.2


def test_broken_plugin_is_skipped_with_a_warning(plugin_dir):
    install(
        plugin_dir,
        "fake_idprops_plugin_b",
        "raise RuntimeError('boom at import')",
        {"broken": "fake_idprops_plugin_b:Nope"},
    )
    install(plugin_dir, "fake_idprops_plugin_c", PLUGIN, {"working": "fake_idprops_plugin_c:HalfTwoNN"})
    with pytest.warns(PluginWarning, match="'broken'.*RuntimeError: boom at import"):
        names = idprops.available_estimators()
    assert "broken" not in names and {"working", "mle", "twonn"} <= set(names)
    with pytest.raises(ImportError, match="boom at import"):
        idprops.get_estimator("broken")


def test_clash_with_builtin_warns_and_builtin_wins(plugin_dir):
    install(plugin_dir, "fake_idprops_plugin_d", PLUGIN, {"mle": "fake_idprops_plugin_d:HalfTwoNN"})
    with pytest.warns(
        PluginWarning,
        match="'mle' is declared by 'idprops.estimators.mle:MLEDimension'.*fake_idprops_plugin_d:HalfTwoNN",
    ):
        cls = idprops.get_estimator("mle")
    assert cls is idprops.MLEDimension


def test_a_plugin_pointing_inside_idprops_is_still_a_plugin(plugin_dir):
    # Its value sorts before the built-in's; built-ins are known by distribution.
    install(plugin_dir, "fake_idprops_plugin_e", PLUGIN, {"mle": "idprops.data:sample_cube"})
    with pytest.warns(PluginWarning, match="using 'idprops.estimators.mle:MLEDimension'"):
        cls = idprops.get_estimator("mle")
    assert cls is idprops.MLEDimension


def test_collect_is_a_pure_function_of_entry_points():
    eps = [
        EntryPoint("x", "zzz_plugin:X", "idprops.estimators"),
        EntryPoint("x", "aaa_plugin:X", "idprops.estimators"),
        EntryPoint("y", "idprops.estimators.mle:MLEDimension", "idprops.estimators"),
    ]
    with pytest.warns(PluginWarning, match="'x'"):
        chosen = collect_entry_points(eps)
    assert chosen["x"].value == "aaa_plugin:X"  # deterministic: first by value
    assert chosen["y"].value.startswith("idprops.")


def test_same_declaration_twice_is_not_a_clash(recwarn):
    ep = EntryPoint("x", "pkg:X", "idprops.estimators")
    assert collect_entry_points([ep, ep])["x"] is ep
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_runtime_registration():
    class Custom(idprops.MLEDimension):
        pass

    idprops.register_estimator("custom_runtime", Custom, replace=True)
    assert idprops.get_estimator("custom_runtime") is Custom
    assert "custom_runtime" in idprops.available_estimators()
    with pytest.raises(ValueError, match="already registered"):
        idprops.register_estimator("mle", Custom)


def test_unknown_name_lists_what_exists():
    with pytest.raises(ValueError, match="unknown estimator 'nope'; available: .*mle"):
        idprops.get_estimator("nope")


def test_resolve_accepts_instances_and_classes_without_touching_them():
    original = idprops.MLEDimension(k=7)
    resolved = registry.resolve_estimator(original, k=9)
    assert resolved is not original and original.k == 7 and resolved.k == 9
    assert registry.resolve_estimator(idprops.TwoNNDimension).get_params()["method"] == "regression"
