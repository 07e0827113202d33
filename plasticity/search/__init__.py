"""Equal-budget hyperparameter search as part of a suite (`[search]`): Optuna studies whose trials are cells.

space.py validates the `[search]` table; objective.py trains and scores one trial (validation
data only); study.py runs the studies (resumable, parallel, one storage) and builds the final
stage; the report's search section is plasticity/report/search.py.
"""
from ..search_space import SearchSpec, parse_search
from .export import final_suite
from .storage import open_storage
from .study import run_search

__all__ = ["SearchSpec", "final_suite", "open_storage", "parse_search", "run_search"]
