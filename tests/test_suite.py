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
    ('[budget]\nepochs = -1\n', "'epochs' must be a finite number in the range 0 < epochs <= 1,000,000, got -1"),
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


# ------------------------------------------------------------- numbers that are not numbers

RULE = '[[rules]]\nname = "bp"\n'


@pytest.mark.parametrize("table", ["[budget]\n", "TASK"])
@pytest.mark.parametrize("value, pattern", [
    ("seconds = nan", r"'seconds' must be a finite number in the range 0 < seconds <= 100,000,000, got nan"),
    ("seconds = inf", r"'seconds' must be a finite number in the range 0 < seconds <= 100,000,000, got inf"),
    ("epochs = inf", r"'epochs' must be a finite number in the range 0 < epochs <= 1,000,000, got inf"),
    ("epochs = -inf", r"'epochs' must be .* got -inf"),
    ("epochs = nan", r"'epochs' must be .* got nan"),
    ("seconds = 0.0", r"'seconds' must be .* got 0.0"),
    ("seconds = 1e300", r"'seconds' must be .* got 1e\+300"),
    ("epochs = 1e7", r"'epochs' must be a finite number in the range 0 < epochs <= 1,000,000, got 10000000.0"),
    ("updates = 0", r"'updates' must be a whole number in the range 0 < updates <= 1,000,000,000,000, got 0"),
    ("updates = -5", r"'updates' must be .* got -5"),
    ("updates = 100000000000000000000000000000", r"'updates' must be .* got 1000+$"),
    ("updates = 2.5", r"'updates' has the wrong type: float 2.5"),
])
def test_budget_values_finite_and_in_range(tmp_path, table, value, pattern):
    """The suite's [budget] and a task entry's budget are held to the same rules, naming file and key."""
    if table == "TASK":
        text = '[[tasks]]\nname = "digits"\nbudget = { ' + value + ' }\n' + RULE
    else:
        text = table + value + "\n" + BASE + RULE
    with pytest.raises(ConfigError, match=pattern) as err:
        load_suite(suite_file(tmp_path, text))
    assert str(tmp_path / "s.toml") in str(err.value)
    assert ("tasks[0].budget" if table == "TASK" else "[budget]") in str(err.value)


def test_task_default_budget_is_checked(monkeypatch):
    from plasticity import registry
    monkeypatch.setattr(registry.get_task("digits"), "budget", {"epochs": float("inf")})
    with pytest.raises(ConfigError, match=r"default budget of task 'digits'.*'epochs' must be .* got inf"):
        parse_suite(BASE + RULE)


@pytest.mark.parametrize("text, pattern", [
    ("[evaluation]\nper_decade = 1000000000\n", r"per_decade must lie in 1..1,000, got 1000000000"),
    ("[evaluation]\nper_decade = 0\n", r"per_decade must lie in 1..1,000"),
    ("[evaluation]\nper_decade = 1e3\n", r"'per_decade' has the wrong type: float"),
    ("[evaluation]\nfeedback_metrics = -1\n", r"feedback_metrics must be 0 \(never\) or k in 1..1,000,000,000 \(every k-th evaluation\), got -1"),
    ("[evaluation]\nfeedback_metrics = 99999999999999999999\n", r"feedback_metrics must be 0 \(never\) or k in 1..1,000,000,000 .* got 9+$"),
    ("seeds = [-1]\n", r"seeds: -1 is out of range; each seed a whole number in 0..4294967295"),
    ("seeds = [0, 4294967296]\n", r"seeds: 4294967296 is out of range"),
    ("seeds = [3, 1, 3]\n", r"seeds: 3 is listed twice"),
    ("seeds = 0\n", r"seeds = 0: give a count in 1..4,294,967,296"),
    ("seeds = 1e3\n", r"seeds must be a count or a non-empty list"),
    ("seeds = [nan]\n", r"seeds must be a count or a non-empty list of distinct integers \(each seed a whole number in 0..4294967295\), got \[nan\]"),
    ('dtype = "float32\\u0000"\n', r"dtype: 'float32\\x00' is not one of float32, float64"),
    ("dtype = 32\n", r"'dtype' must be a str"),
])
def test_evaluation_seeds_dtype_checked(text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_suite(text + BASE + RULE)


def test_evaluation_per_decade_at_its_limit_builds_a_schedule_at_once():
    from plasticity.points import log_points
    cell = parse_suite("[evaluation]\nper_decade = 1000\n" + BASE + RULE).cells[0]
    points = log_points(cell.evaluation["per_decade"])
    assert [next(points) for _ in range(5)] == [1, 2, 3, 4, 5]
    huge = log_points(10**15)  # would take forever stepping one index at a time
    assert [next(huge) for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("entry, line, pattern", [
    ("rule", 'optimizers = [{ name = "sgd", params = { lr = nan } }]', r"\.lr: nan is not a number"),
    ("rule", 'optimizers = [{ name = "sgd", grid = { lr = [0.1, nan] } }]', r"optimizers\[0\] \(optimizer 'sgd'\)\.lr: nan is not a number"),
    ("rule", 'optimizers = [{ name = "sgd", params = { lr = inf } }]', r"\.lr: inf is not allowed"),
    ("rule", 'optimizers = [{ name = "sgd", params = { lr = 1e999 } }]', r"\.lr: inf is not allowed"),
    ("rule", 'optimizers = [{ name = "sgd", params = { lr = 100000000000000000000000000000 } }]',
     r"\.lr: 1000+ is out of range"),
    ("task", "params = { init_scale = -inf }", r"\.init_scale: -inf is not allowed"),
    ("task", "params = { hidden = [1000000000000000000000000000000] }", r"\.hidden\[0\]: 1000+ is out of range"),
    ("task", "params = { hidden = [-3] }", r"hidden widths must be positive, got \[-3\]"),
    ("task", "grid = { batch_size = [32, -1] }", r"batch_size must be positive"),
])
def test_parameter_values_finite_and_in_range(tmp_path, entry, line, pattern):
    """NaN, infinities and 64-bit overflows in params and grids are ConfigErrors naming file, entry and key."""
    if entry == "task":
        text = f'[[tasks]]\nname = "digits"\n{line}\n' + RULE
    else:
        text = BASE + RULE + line + "\n"
    with pytest.raises(ConfigError, match=pattern) as err:
        load_suite(suite_file(tmp_path, text))
    assert str(tmp_path / "s.toml") in str(err.value)


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def test_params_nan_never_inf_only_where_allowed():
    from dataclasses import dataclass, field

    from plasticity.params import ALLOW_INF, make_params

    @dataclass(frozen=True)
    class P:
        scale: float = 1.0
        cap: float = field(default=1.0, metadata={ALLOW_INF: True})
        widths: tuple[int, ...] = (1,)
        anything: object = None

    assert make_params(P, {"cap": float("inf")}, "here").cap == float("inf")
    for key, value, pattern in [("scale", float("inf"), r"here\.scale: inf is not allowed"),
                                ("cap", float("nan"), r"here\.cap: nan is not a number"),
                                ("scale", 10**400, r"here\.scale: 1000+ is out of range"),
                                ("widths", [2**63], r"here\.widths\[0\]: 9223372036854775808 is out of range"),
                                ("anything", {"a": [float("nan")]}, r"here\.anything: a\[0\]: nan is not a number"),
                                ("anything", _nested(20), r"nested more than 16 levels"),
                                ("anything", {"k\x00": 1}, r"key: 'k\\x00' holds control characters")]:
        with pytest.raises(ConfigError, match=pattern):
            make_params(P, {key: value}, "here")


@pytest.mark.parametrize("text, pattern", [
    ('name = "a\\u0000b"\n' + BASE + RULE, r"suite file .*s\.toml: name: 'a\\x00b' holds control characters \(U\+0000\)"),
    ('name = "a\\u202eb"\n' + BASE + RULE, r"name: .* holds control characters \(U\+202E\)"),
    ('name = "a\\\\b"\n' + BASE + RULE, r"name must be a plain folder name"),
    (BASE + '[[rules]]\nname = "bp\\u0000"\n', r"rules\[0\]: name: 'bp\\x00' holds control characters \(U\+0000\)"),
    ('[[tasks]]\nname = "digits\\u0007"\n' + RULE, r"tasks\[0\]: name: 'digits\\x07' holds control"),
    (BASE + RULE + 'optimizers = [{ name = "sg\\u001bd" }]\n', r"optimizers\[0\]: name: 'sg\\x1bd' holds control"),
    (BASE + RULE + 'params = { "lo\\u0000ss" = "ce" }\n', r"rules\[0\] \(rule 'bp'\): parameter name: 'lo\\x00ss' holds control characters"),
    (BASE + '[[rules]]\nname = "tp"\nparams = { feedback_optimizer = "adam\\u0000" }\n',
     r"feedback_optimizer: 'adam\\x00' holds control characters"),
    ('plugins = ["my\\u0000rules"]\n' + BASE + RULE, r"plugins\[0\]: 'my\\x00rules' holds control characters"),
    ('description = "line\\u0000"\n' + BASE + RULE, r"description: 'line\\x00' holds control characters"),
    ("plugins = [3]\n" + BASE + RULE, r"plugins\[0\]: expected a folder path \(a string\), got 3"),
    ('description = "' + "x" * 10_001 + '"\n' + BASE + RULE, r"description: text of at most 10,000 characters"),
    (BASE + '[[rules]]\nname = "' + "b" * 201 + '"\n', r"rules\[0\]: name: a name of at most 200 characters"),
    ('[[published]]\ntask = "digits"\nrule = "bp"\nmetric = "test_error"\nvalue = 1.0\nsource = "x"\nnote = 3\n'
     + BASE + RULE, r"published\[0\]: 'note' must be a string"),
    ('[[published]]\ntask = "digits"\nrule = "bp"\nmetric = "test_error"\nvalue = nan\nsource = "x"\n'
     + BASE + RULE, r"published\[0\]: value must be a percentage between 0 and 100, got nan"),
    ('[[published]]\ntask = "digits"\nrule = "bp"\nmetric = "test_error"\nvalue = 1.0\nsource = "a\\u0000"\n'
     + BASE + RULE, r"published\[0\]\.source: 'a\\x00' holds control characters"),
    (BASE + RULE + "params = { loss = " + "[" * 3000 + "]" * 3000 + " }\n", r"nested too deeply to read"),
])
def test_hostile_names_and_values_refused(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        load_suite(suite_file(tmp_path, text))
    assert str(tmp_path / "s.toml") in str(err.value)


def test_free_text_keeps_line_breaks():
    suite = parse_suite('description = """two\n\tlines"""\n' + BASE + RULE)
    assert suite.description == "two\n\tlines"


def test_suite_file_too_big_or_not_text(tmp_path):
    path = suite_file(tmp_path, "# " + "x" * (1 << 20) + "\n" + BASE + RULE)
    with pytest.raises(ConfigError, match=r"s\.toml: 1,048,.* bytes; a suite file may hold at most 1,048,576"):
        load_suite(path)
    path.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(ConfigError, match=r"s\.toml: not UTF-8 text"):
        load_suite(path)


@pytest.mark.parametrize("grid", ["[0.1, 0.1]", "[1, 1.0]"])
def test_repeated_grid_value_refused(grid):
    with pytest.raises(ConfigError, match=r"two entries give the same cell.*remove the repeat"):
        parse_suite(BASE + RULE + f'optimizers = [{{ name = "sgd", grid = {{ lr = {grid} }} }}]\n')


def test_repeated_rule_entry_refused():
    with pytest.raises(ConfigError, match=r"two entries give the same cell"):
        parse_suite(BASE + RULE + RULE)


# ----------------------------------------------------------------------------- the cell limit

def test_suite_above_cell_limit_refused_before_expansion(monkeypatch):
    import plasticity.suite as suite_mod
    expanded = []
    real = suite_mod._expand
    monkeypatch.setattr(suite_mod, "_expand", lambda *a: expanded.append(a) or real(*a))
    values = ", ".join(str(0.001 * (i + 1)) for i in range(1000))
    text = (BASE + RULE + f'optimizers = [{{ name = "sgd", grid = {{ lr = [{values}], momentum = [{values}] }} }}]\n')
    with pytest.raises(ConfigError, match=r"expands to 1,000,000 cells \(1 task settings x 1,000,000 rule and "
                                          r"optimizer settings x 1 seeds\), more than the limit of 10,000.*--max-cells"):
        parse_suite(text)
    assert expanded == [], "cells were built before the count was checked"
    with pytest.raises(ConfigError, match=r"expands to 1,000,000,000 cells"):
        parse_suite("seeds = 1000000000\n" + BASE + RULE)


def test_cell_limit_is_exact_and_adjustable():
    text = "seeds = 3\n" + BASE + RULE
    assert len(parse_suite(text, max_cells=3).cells) == 3
    with pytest.raises(ConfigError, match=r"expands to 3 cells .* limit of 2"):
        parse_suite(text, max_cells=2)
    # rules = "all" counts every registered rule (with its default optimizer)
    from plasticity import registry
    n_rules = len(registry.names("rule"))
    with pytest.raises(ConfigError, match=rf"expands to {2 * n_rules} cells"):
        parse_suite('rules = "all"\nseeds = 2\n' + BASE, max_cells=2 * n_rules - 1)


def test_cli_max_cells(tmp_path, capsys):
    from plasticity.cli import main
    path = suite_file(tmp_path, "seeds = 3\n[budget]\nupdates = 1\n" + BASE + RULE)
    assert main(["run", str(path), "--max-cells", "2", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "expands to 3 cells" in err and "limit of 2" in err and str(path) in err
    assert not (tmp_path / "out").exists()
    assert main(["run", str(path), "--max-cells", "0", "--out", str(tmp_path / "out")]) == 2
    assert "--max-cells must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("keys, named", [
    ("points = 3\nper_decade = 5\n", "remove per_decade,"),
    ("points = 3\nevery_epoch = true\n", "remove every_epoch,"),
    ("every_epoch = false\npoints = 3\nper_decade = 5\n", "remove per_decade and every_epoch,"),
])
def test_evaluation_points_with_per_decade_or_every_epoch_refused(tmp_path, keys, named):
    """points replaces the log schedule and the per-epoch evaluations: a mix would silently drop one."""
    with pytest.raises(ConfigError, match=r"\[evaluation\]: points = 3 replaces both per_decade and every_epoch") as err:
        load_suite(suite_file(tmp_path, "[budget]\nupdates = 20\n[evaluation]\n" + keys + BASE + RULE))
    assert str(tmp_path / "s.toml") in str(err.value) and named in str(err.value)


def test_evaluation_points_beyond_an_updates_budget_refused():
    """At most one evaluation per update: 1,000 points over 20 updates would silently give fewer."""
    with pytest.raises(ConfigError, match=r"tasks\[0\]: evaluation points = 1000 is more than the budget's 20 updates "
                                          r"\(at most one evaluation per update\); give points <= 20"):
        parse_suite("[budget]\nupdates = 20\n[evaluation]\npoints = 1000\n" + BASE + RULE)
    assert parse_suite("[budget]\nupdates = 20\n[evaluation]\npoints = 20\n" + BASE + RULE).cells
    # with epochs the budget's updates are known only once the data are: left to the engine
    assert parse_suite("[budget]\nepochs = 1\n[evaluation]\npoints = 1000\n" + BASE + RULE).cells


@pytest.mark.parametrize("table", ["[budget]\nepochs = 1e-9\n", BASE + "budget = { epochs = 1e-9 }\n"])
def test_an_epochs_budget_under_one_update_of_any_epoch_refused(table):
    text = table + (BASE if table.startswith("[budget]") else "") + RULE
    with pytest.raises(ConfigError, match=r"'epochs' = 1e-09 is under one update even of an epoch of 100,000,000 "
                                          r"updates, so every cell would run one update: give epochs >= 1e-08"):
        parse_suite(text)
    assert parse_suite("[budget]\nepochs = 1e-8\n" + BASE + RULE).cells[0].budget["epochs"] == 1e-8


def test_suite_plugins_that_name_a_file_say_so(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"plugins: folder .*afile is a file, not a folder"):
        load_suite(suite_file(tmp_path, 'plugins = ["afile"]\n' + BASE + RULE))
