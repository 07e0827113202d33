"""`mutmut run` adapted to this layout (tox -e mutation; mutmut is pinned there: this reaches into it).

1. Functions decorated by `@torch.no_grad()` are mutated too. mutmut 3 skips every decorated
   function (a decorator may have side effects when the function is copied for its trampoline);
   `torch.no_grad()` has none, and much of the core math lives in such functions
   (feedback.write_grads, GOFAU.step, ER.update, TP's targets). They are judged as if undecorated;
   the trampoline and the mutant copies keep the decorator. Other decorators are still skipped.
2. Plugin files (rules/, tasks/) are imported by the registry as `plasticity_plugins.rules_<hash>.er`,
   not as `rules.er`, the name mutmut gives their mutants; the trampolines are told the latter, so
   a mutant of rules/er.py is switched on, and its tests are found, like any other.

mutmut forks every process it runs tests in from this one, so the patches below reach them all.
"""
from __future__ import annotations

import re
import sys

import libcst as cst
import mutmut.mutation.trampoline as trampoline
from mutmut.__main__ import cli
from mutmut.mutation.file_mutation import MutationVisitor

PLUGIN_MODULE = re.compile(r"^plasticity_plugins\.(rules|tasks)_\d+\.")


def is_no_grad(decorator: cst.Decorator) -> bool:
    """True for `@torch.no_grad()`."""
    d = decorator.decorator
    return (isinstance(d, cst.Call) and isinstance(d.func, cst.Attribute) and d.func.attr.value == "no_grad"
            and isinstance(d.func.value, cst.Name) and d.func.value.value == "torch")


_skip = MutationVisitor._skip_node_and_children


def skip_node_and_children(self: MutationVisitor, node: cst.CSTNode) -> bool:
    if isinstance(node, cst.FunctionDef) and node.decorators and all(is_no_grad(d) for d in node.decorators):
        return _skip(self, node.with_changes(decorators=[]))
    return _skip(self, node)


def file_module(name: str) -> str:
    """The module name mutmut derives from a file's path (`rules.er` for a loaded plugin file)."""
    return PLUGIN_MODULE.sub(r"\1.", name)


_wrap = trampoline.wrap_in_trampoline
_record = trampoline.record_trampoline_hit


def wrap_in_trampoline(mutants_dict, is_classmethod=False):
    wrap = _wrap(mutants_dict, is_classmethod)

    def mutmut_mutated(decorated_func):
        decorated_func.__module__ = file_module(decorated_func.__module__)
        return wrap(decorated_func)
    return mutmut_mutated


def record_trampoline_hit(name: str, caller: str | None = None) -> None:
    _record(file_module(name), caller=None if caller is None else file_module(caller))


MutationVisitor._skip_node_and_children = skip_node_and_children
trampoline.wrap_in_trampoline = wrap_in_trampoline
trampoline.record_trampoline_hit = record_trampoline_hit

if __name__ == "__main__":
    sys.argv[0] = "mutmut"
    sys.exit(cli())
