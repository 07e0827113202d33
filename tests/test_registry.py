"""Plugin discovery: folders, duplicate names, plugins that fail to import, `plasticity list`."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from plasticity import registry
from plasticity.cli import main
from plasticity.errors import RegistryError

RULE = '''
from dataclasses import dataclass
from plasticity import LearningRule, register_rule

@register_rule("{name}")
class R(LearningRule):
    """A test rule."""
    def credit(self, x, y):
        return {{}}
'''


def write_plugin(folder: Path, filename: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(text))
    return path


def test_plugin_folder_registers_rule(tmp_path):
    write_plugin(tmp_path / "p", "myrule.py", RULE.format(name="test_plugin_rule"))
    try:
        registry.load_plugins([tmp_path / "p"])
        assert "test_plugin_rule" in registry.names("rule")
        assert registry.get_rule("test_plugin_rule").__doc__ == "A test rule."
    finally:
        registry._unregister("rule", "test_plugin_rule")


def test_plugin_that_raises_names_the_file(tmp_path):
    path = write_plugin(tmp_path / "bad", "broken.py", "x = 1\nraise ValueError('boom')\n")
    with pytest.raises(RegistryError, match=rf"{path}, line 2 failed to import: ValueError: boom"):
        registry.load_plugins([tmp_path / "bad"])


def test_two_rules_with_the_same_name_name_both_files(tmp_path):
    path = write_plugin(tmp_path / "dup", "bp_again.py", RULE.format(name="bp"))
    with pytest.raises(RegistryError, match=rf"two rules are named 'bp': one in .*rules/bp.py, another in {path}"):
        registry.load_plugins([tmp_path / "dup"])


def test_missing_plugin_folder(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        registry.load_plugins([tmp_path / "nope"])


def test_unknown_name_lists_known():
    with pytest.raises(RegistryError, match=r"unknown optimizer 'sdg' \(did you mean 'sgd'\?\)"):
        registry.get_optimizer("sdg")


def test_list_shows_every_component_with_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in registry.names("rule") + registry.names("task") + registry.names("optimizer"):
        assert f"  {name} " in out
    assert "Backpropagation" in out and "loss = 'ce'" in out and "lr = 0.1" in out
    assert "thresholds: 0.8, 0.9, 0.95" in out


def test_cli_error_is_one_line_with_exit_2(capsys):
    assert main(["run", "no_such_suite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error: suite 'no_such_suite' not found")


def _entry_points(monkeypatch, tmp_path, module_text: str, value: str) -> None:
    """Pretend an installed package declares `value` in the group plasticity.rules."""
    import importlib.metadata as md
    (tmp_path / f"{value.split(':')[0]}.py").write_text(textwrap.dedent(module_text))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = {"plasticity.rules": [md.EntryPoint(name="ep_rule", value=value, group="plasticity.rules")]}
    monkeypatch.setattr(registry.importlib.metadata, "entry_points", lambda group: eps.get(group, []))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)


def test_entry_point_registers_an_undecorated_class(monkeypatch, tmp_path):
    _entry_points(monkeypatch, tmp_path, '''
        from plasticity import LearningRule

        class EPRule(LearningRule):
            """A rule from a pip-installed package."""
    ''', "ep_plugin_mod:EPRule")
    try:
        registry.load_plugins()
        assert registry.get_rule("ep_rule").__doc__ == "A rule from a pip-installed package."
    finally:
        registry._unregister("rule", "ep_rule")


def test_entry_point_that_fails_names_it(monkeypatch, tmp_path):
    _entry_points(monkeypatch, tmp_path, "raise ImportError('missing dependency')\n", "ep_broken_mod:EPRule")
    with pytest.raises(RegistryError, match=r"entry point 'ep_rule' in group plasticity.rules "
                                            r"\(ep_broken_mod:EPRule\) failed to import: ImportError: missing"):
        registry.load_plugins()
