"""plasticity: a benchmark suite for biologically-plausible learning rules.

Public API for plugin authors: the decorators, the `LearningRule`, `Task` and `OptimizerSpec`
base classes, and the network they operate on. For analysis: `load_results(folder)`, a suite
folder's runs as pandas DataFrames (see `plasticity.frames`). From a notebook or a script:
`run(suite, out=None, jobs=1, device="auto", ...)` runs a suite and returns its results, and
`report(folder)` rebuilds a report (see `plasticity.api`).
"""
from typing import Any

from .errors import ConfigError, DataError, PlasticityError, RegistryError
from .network import MLP, Trace
from .optimizers import OptimizerSpec, build_optimizer
from .registry import load_plugins, register_optimizer, register_rule, register_task
from .rule import FeedbackPair, LearningRule
from .task import Activation, RawData, Split, Task, TaskData, TaskParams, default_data_dir
from .version import __version__ as __version__  # re-exported: plasticity.__version__

__all__ = [
    "MLP", "Trace", "LearningRule", "FeedbackPair", "Task", "TaskParams", "TaskData", "RawData", "Split",
    "Activation", "OptimizerSpec", "build_optimizer", "register_rule", "register_task", "register_optimizer",
    "load_plugins", "default_data_dir", "PlasticityError", "ConfigError", "DataError", "RegistryError",
    "load_results", "run", "report",
]


def __getattr__(name: str) -> Any:
    # On first use: pandas, the runner and the report stay out of `import plasticity` (plugins import it).
    if name == "load_results":
        from .frames import load_results
        return load_results
    if name == "run":
        from .api import run
        return run
    if name == "report":
        # The report package, callable as `plasticity.report(folder)`: a function of that name would be
        # replaced by the package as soon as anything imports `plasticity.report`.
        import importlib
        return importlib.import_module(".report", __name__)
    raise AttributeError(f"module 'plasticity' has no attribute {name!r}")
