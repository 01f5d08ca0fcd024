"""A user's own model or dataset, named in the config by import path.

``model.factory: "package.module:function"`` is called as
``function(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module`` with the
torch RNG seeded from the run's seed (and restored afterwards), so the initial weights
are reproducible. ``dataset.factory`` is called as
``function(num_clients: int, seed: int) -> fedsys.data.FederatedDataset``. The module
is imported as any Python import is, with the working folder tried first (as uvicorn
and gunicorn do for ``module:app``): installed, in the folder ``fedsys run`` starts
in, or next to a script that runs the simulator. Naming a module runs its code.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from fedsys.config.loader import ConfigError


def load_factory(path: str, key: str) -> Callable[..., Any]:
    """Import ``module:function`` named by config key ``key``.

    Raises
    ------
    ConfigError
        Naming the key, if the module cannot be imported or has no such callable.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{key} {path!r} must look like 'package.module:function'")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key} {path!r}: cannot import {module_name!r} ({exc})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError(f"{key} {path!r}: {module_name} has no callable {attribute!r}")
    return target  # type: ignore[no-any-return]


def call_factory(path: str, key: str, expected: type, *args: Any) -> Any:
    """Call the factory at ``path`` and check it returned an ``expected`` instance.

    Raises
    ------
    ConfigError
        If the factory cannot be loaded or returns something else.
    """
    made = load_factory(path, key)(*args)
    if not isinstance(made, expected):
        raise ConfigError(
            f"{key} {path!r} returned a {type(made).__name__}, not a {expected.__name__}"
        )
    return made
