"""The README's examples are real code: the rule loads as a plugin and passes the conformance kit,
the GOFAU optimizer example runs and trains."""
from __future__ import annotations

import configparser
import math
import re
import tomllib
from pathlib import Path

import torch

from plasticity import registry
from plasticity.testing import check_rule

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


def test_readme_rule_example_is_conformant(tmp_path):
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_rule" in b)
    assert len(block.splitlines()) < 60
    (tmp_path / "sign_symmetry.py").write_text(block)
    try:
        registry.load_plugins([tmp_path])
        failed = [r for r in check_rule("sign-symmetry") if not r.passed]
        assert not failed, failed
    finally:
        registry._unregister("rule", "sign-symmetry")


def test_readme_names_the_ci_test_command():
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    command = "tox -e py"
    assert command in README.read_text().split("## Add a rule")[0]
    assert ci.strip().splitlines()[-1] == command


def test_readme_gofau_example_runs_and_trains():
    """The GOFAU block works as printed on a plain torch model and lowers the loss it trains on."""
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "plasticity.gofau" in b)
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(block, "README.md", "exec"), namespace)
    model, x, y = namespace["model"], namespace["x"], namespace["y"]
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(x), y))
    assert final < 0.5 * math.log(10), f"loss after the example's 100 steps: {final:.3f}"
    assert "state" in namespace["state"]


def test_readme_results_as_data_example_runs(tmp_path, capsys):
    """The "Results as data" block runs as printed on a real suite folder and prints the means."""
    from plasticity.runner import run_suite
    from plasticity.suite import parse_suite

    folder = tmp_path / "quick"
    suite = parse_suite('seeds = 2\n[budget]\nupdates = 3\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    run_suite(suite, folder, "cpu", progress=False)
    section = README.read_text().split("## Results as data")[1].split("\n## ")[0]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert '"reports/quick"' in block
    namespace: dict = {}
    exec(compile(block.replace('"reports/quick"', repr(str(folder))), "README.md", "exec"), namespace)
    assert len(namespace["done"]) == 2 and namespace["done"]["optimizer.lr"].notna().all()
    out = capsys.readouterr().out
    assert "mean" in out and "bp + sgd" in out and "optimizer.lr" in out
    assert namespace["curves"].max() > 1  # percent


def test_readme_opens_with_the_two_setup_commands_and_the_first_installs_tox():
    """The README's first lines are the two commands; run one after the other on a fresh machine,
    the first must install what the second calls (tox), from an extra that exists."""
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block.start() < text.index("\n## "), "the set-up commands come before any section"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["pip install -e '.[dev]' && plasticity run quick", "tox -e py"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"tox\b", req) for req in extras["dev"])


def test_tox_runs_ruff_then_pytest_and_has_an_env_per_suite():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    commands = [c.split()[:2] for c in tox["testenv"]["commands"].strip().splitlines()]
    assert [c[0] for c in commands] == ["ruff", "pytest"] and commands[0][1] == "check"
    assert "ruff" in tox["testenv"]["deps"]
    section = next(s for s in tox.sections() if s.startswith("testenv:{"))
    assert set(section[len("testenv:{"):-1].split(",")) == {p.stem for p in (ROOT / "suites").glob("*.toml")}


def test_readme_use_from_python_example_runs(tmp_path, monkeypatch, capsys):
    """The "Use from Python" block runs as printed, in a folder whose own suites/quick.toml (the
    built-in quick on two rules and two updates) runs instead of the built-in one of that name."""
    from plasticity.toml_text import dumps

    monkeypatch.chdir(tmp_path)
    quick = tomllib.loads((ROOT / "suites" / "quick.toml").read_text())
    quick.update(seeds=[0], budget={"updates": 2}, rules=[{"name": "bp"}, {"name": "dfa"}])
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "quick.toml").write_text(dumps(quick))
    section = README.read_text().split("## Use from Python")[1].split("\n## ")[0]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "suite='quick'" in out and "2 cells: 0 already complete, 2 complete" in out
    assert (tmp_path / "reports" / "quick" / "index.html").is_file()
    result = namespace["result"]
    assert result.suite == "bp-vs-fa" and result.finished == {"complete": 4} and not result.errors
    assert namespace["html"] == Path("reports/bp-vs-fa/index.html") and (tmp_path / namespace["html"]).is_file()
    curves = result.evals.groupby("variant")["val_accuracy_pct"].max()
    assert len(curves) == 2 and all(v in out for v in curves.index) and curves.max() > 10  # percent
