"""Suite files: valid ones expand into the right cells; every kind of bad input is rejected clearly."""
from __future__ import annotations

from pathlib import Path

import pytest

from plasticity.errors import ConfigError, RegistryError
from plasticity.suite import load_suite, parse_suite

BASE = '[[tasks]]\nname = "digits"\n'


def suite_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_grid_expands_rules_optimizers_and_seeds():
    text = 'seeds = 2\n' + BASE + '''[[rules]]
name = "bp"
grid = { loss = ["ce", "mse"] }
optimizers = [{ name = "sgd", grid = { lr = [0.1, 0.01] } }, { name = "adam" }]
'''
    suite = parse_suite(text)
    assert len(suite.cells) == 2 * (2 + 1) * 2
    variants = {c.labels["variant"] for c in suite.cells}
    assert "bp(loss=mse) + sgd(lr=0.01)" in variants
    assert "bp(loss=ce) + adam" in variants
    sgd_cell = next(c for c in suite.cells if c.optimizer.name == "sgd")
    assert set(sgd_cell.labels["grid"]) == {"rule.loss", "optimizer.lr"}
    ids = {c.cell_id for c in suite.cells}
    assert len(ids) == len(suite.cells), "every cell has its own id"


def test_cell_id_is_stable_and_ignores_suite_name():
    a = parse_suite('name = "a"\n' + BASE + '[[rules]]\nname = "bp"\n').cells[0]
    b = parse_suite('name = "b"\n' + BASE + '[[rules]]\nname = "bp"\n').cells[0]
    c = parse_suite('name = "a"\nseeds = [1]\n' + BASE + '[[rules]]\nname = "bp"\n').cells[0]
    assert a.cell_id == b.cell_id != c.cell_id


def test_rules_all_uses_every_registered_rule():
    from plasticity import registry
    suite = parse_suite('rules = "all"\n' + BASE)
    assert {c.rule.name for c in suite.cells} == set(registry.names("rule"))


def test_budget_replaces_the_task_default_whole():
    # digits' default is 20 epochs: a suite asking for 7 updates must not inherit that cap
    suite = parse_suite('[budget]\nupdates = 7\n' + BASE + '[[rules]]\nname = "bp"\n')
    assert suite.cells[0].budget == {"updates": 7, "epochs": None, "seconds": None}
    # and a task entry's own budget replaces the suite's
    per_task = BASE.replace('name = "digits"', 'name = "digits"\nbudget = { seconds = 5 }', 1)
    suite = parse_suite('[budget]\nupdates = 7\n' + per_task + '[[rules]]\nname = "bp"\n')
    assert suite.cells[0].budget == {"updates": None, "epochs": None, "seconds": 5}
    assert parse_suite(BASE + '[[rules]]\nname = "bp"\n').cells[0].budget["epochs"] == 20


def test_malformed_toml_names_the_line(tmp_path):
    path = suite_file(tmp_path, 'seeds = [0, 1]\n[[tasks]]\nname = "digits\n')
    with pytest.raises(ConfigError, match=r"s\.toml: invalid TOML.*line 3"):
        load_suite(path)


@pytest.mark.parametrize("text, pattern", [
    ('[[rules]]\nname = "bpp"\n', r"unknown rule 'bpp' \(did you mean 'bp'\?\); known rules: .*bp"),
    ('[[rules]]\nname = "bp"\noptimizers = [{ name = "adamm" }]\n',
     r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); known optimizers: adagrad, adam"),
])
def test_unknown_names_list_choices_and_closest(text, pattern):
    with pytest.raises(RegistryError, match=pattern):
        parse_suite(BASE + text)


def test_unknown_task():
    with pytest.raises(RegistryError, match=r"unknown task 'digit' \(did you mean 'digits'\?\)"):
        parse_suite('[[tasks]]\nname = "digit"\n[[rules]]\nname = "bp"\n')


def test_parameter_not_in_params():
    with pytest.raises(ConfigError, match=r"rules\[0\].*unknown parameter 'los' \(did you mean 'loss'\?\); known parameters: loss"):
        parse_suite(BASE + '[[rules]]\nname = "bp"\nparams = { los = "ce" }\n')


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"optimizers\[0\].*\.lr: expected float, got str '0.1'"):
        parse_suite(BASE + '[[rules]]\nname = "bp"\noptimizers = [{ name = "sgd", params = { lr = "0.1" } }]\n')
    with pytest.raises(ConfigError, match=r"\.loss: 'hinge' is not one of 'ce', 'mse'"):
        parse_suite(BASE + '[[rules]]\nname = "bp"\nparams = { loss = "hinge" }\n')


def test_invalid_value_rejected_by_params_checks():
    with pytest.raises(ConfigError, match="lr must be positive"):
        parse_suite(BASE + '[[rules]]\nname = "bp"\noptimizers = [{ name = "sgd", params = { lr = -1.0 } }]\n')


def test_empty_grid():
    with pytest.raises(ConfigError, match=r"grid\.loss: empty grid"):
        parse_suite(BASE + '[[rules]]\nname = "bp"\ngrid = { loss = [] }\n')


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown key 'seed' \(did you mean 'seeds'\?\)"):
        parse_suite('seed = 3\n' + BASE + '[[rules]]\nname = "bp"\n')


@pytest.mark.parametrize("text, pattern", [
    ('seeds = []\n', "seeds must be a count or a non-empty list"),
    ('dtype = "float16"\n', "dtype: 'float16' is not one of float32, float64"),
    ('[budget]\nepochs = -1\n', "'epochs' must be positive"),
    ('[budget]\nepoch = 1\n', r"unknown key 'epoch' \(did you mean 'epochs'\?\)"),
])
def test_other_bad_values(text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_suite(text + BASE + '[[rules]]\nname = "bp"\n')


def test_missing_suite_lists_known_suites():
    with pytest.raises(ConfigError, match=r"suite 'quik' not found.*quick.*did you mean 'quick'"):
        load_suite("quik")


def test_shipped_suites_are_valid():
    for path in sorted((Path(__file__).parents[1] / "suites").glob("*.toml")):
        suite = load_suite(path)
        assert suite.cells, path
