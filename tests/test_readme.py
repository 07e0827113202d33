"""The README's rule example is real code: it loads as a plugin and passes the conformance kit."""
from __future__ import annotations

import re
from pathlib import Path

from plasticity import registry
from plasticity.testing import check_rule

README = Path(__file__).parents[1] / "README.md"


def test_readme_rule_example_is_conformant(tmp_path):
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_rule" in b)
    assert len(block.splitlines()) < 60
    (tmp_path / "sign_symmetry.py").write_text(block)
    try:
        registry.load_plugins([tmp_path])
        failed = [r for r in check_rule("sign_symmetry") if not r.passed]
        assert not failed, failed
    finally:
        registry._unregister("rule", "sign_symmetry")


def test_readme_names_the_ci_test_command():
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    command = "tox -e py"
    assert command in README.read_text().split("## Add a rule")[0]
    assert ci.strip().splitlines()[-1] == command
