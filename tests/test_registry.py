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


# ---------------------------------------------------------------------------- names, aliases, descriptions

def test_old_task_name_is_an_alias_of_the_hyphenated_one(tmp_path, capsys):
    """One naming style (hyphens); the old name still resolves, in suites and on the CLI."""
    from plasticity.suite import parse_suite

    assert registry.get_task("fashion_mnist") is registry.get_task("fashion-mnist")
    assert "fashion-mnist" in registry.names("task") and "fashion_mnist" not in registry.names("task")
    text = 'seeds = [0]\n[[tasks]]\nname = "{}"\n[[rules]]\nname = "bp"\n'
    old, new = (parse_suite(text.format(n), tmp_path / "s.toml").cells[0] for n in ("fashion_mnist", "fashion-mnist"))
    assert old.task.name == "fashion-mnist" and old.cell_id == new.cell_id  # same cache key, results reused
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "  fashion-mnist " in out and "  fashion_mnist " not in out  # listed once, as an alias
    assert "old name: fashion_mnist" in out


def test_a_new_component_cannot_take_an_old_name(tmp_path):
    task = ('from plasticity import Task, register_task\n'
            '@register_task("fashion_mnist")\nclass T(Task):\n    """Another task."""\n')
    path = write_plugin(tmp_path / "dup", "t.py", task)
    with pytest.raises(RegistryError, match=rf"two tasks are named 'fashion_mnist' \(an old name of 'fashion-mnist'\)"
                                            rf": one in .*tasks/fashion_mnist.py, another in {path}"):
        registry.load_plugins([tmp_path / "dup"])


def test_unknown_rule_says_how_to_load_one_from_another_folder(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('seeds = [0]\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "my_rule"\n')
    assert main(["run", str(suite), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown rule 'my_rule'" in err and "--plugins DIR" in err and 'plugins = ["DIR"]' in err
    assert main(["check", "my_rule"]) == 2
    assert "--plugins DIR" in capsys.readouterr().err


def test_summary_is_the_whole_first_paragraph(capsys):
    """A summary wrapped over several docstring lines is shown whole (dtp's was cut mid-sentence)."""
    assert main(["list", "rules"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TP with the correction ẑ_{l−1} = z_{l−1} − g_l(z_l) + g_l(ẑ_l), exact whenever the target equals" \
           " the activity." in out
    assert registry.summary_of(type("R", (), {"__doc__": "First line\n    goes on.\n\n    Details."})) == \
        "First line goes on."


def test_every_builtin_parameter_has_a_description():
    from plasticity.params import describe
    missing = [f"{kind} {e.name}: {p.name}" for kind in registry.KINDS for e in registry.entries(kind)
               for p in describe(e.obj.Params) if not p.help]
    assert not missing, missing


def test_plugin_parameter_descriptions_come_from_comments(tmp_path, capsys):
    write_plugin(tmp_path / "p", "described.py", '''
        from dataclasses import dataclass
        from plasticity import LearningRule, register_rule

        @dataclass(frozen=True)
        class Base:
            scale: float = 1.0  # multiplies the feedback
            #: how many steps
            #: per update
            steps: int = 1
            plain: int = 0

        @register_rule("test_described")
        class R(LearningRule):
            """A rule with described parameters."""

            @dataclass(frozen=True)
            class Params(Base):
                scale: float = 2.0  # noqa: E501
        ''')
    try:
        registry.load_plugins([tmp_path / "p"])
        from plasticity.params import describe
        helps = {p.name: p.help for p in describe(registry.get_rule("test_described").Params)}
        # a redeclared field without its own description keeps the base's; lint pragmas are no description
        assert helps == {"scale": "multiplies the feedback", "steps": "how many steps per update", "plain": ""}
        assert main(["list", "rule", "--plugins", str(tmp_path / "p")]) == 0
        out = capsys.readouterr().out
        assert "scale = 2.0" in out and "multiplies the feedback (float)" in out
    finally:
        registry._unregister("rule", "test_described")


def test_a_plugin_rewritten_within_the_same_second_runs_its_new_code(tmp_path):
    """Same size, same mtime second: a bytecode cache would serve the old code; the source loader
    must not, or a cell would run old code under the new source's fingerprint."""
    import os

    path = tmp_path / "same_second.py"
    for value in (1, 2):
        path.write_text(f"VALUE = {value}\n")
        os.utime(path, (1_700_000_000, 1_700_000_000))
        registry._loaded_files.discard(path.resolve())
        registry.load_plugin_file(path)
        module = next(m for m in __import__("sys").modules.values()
                      if getattr(m, "__file__", None) == str(path.resolve()))
        assert module.VALUE == value
