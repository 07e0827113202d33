"""plasticity: a benchmark suite for biologically-plausible learning rules.

Public API for plugin authors: the decorators, the `LearningRule`, `Task` and `OptimizerSpec`
base classes, and the network they operate on. For analysis: `load_results(folder)`, a suite
folder's runs as pandas DataFrames (see `plasticity.frames`).
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
    "load_results",
]


def __getattr__(name: str) -> Any:
    # load_results on first use: pandas and the report stay out of `import plasticity` (plugins import it).
    if name == "load_results":
        from .frames import load_results
        return load_results
    raise AttributeError(f"module 'plasticity' has no attribute {name!r}")
