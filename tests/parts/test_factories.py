"""Models and datasets named by import path in the config."""

from __future__ import annotations

import pytest
from torch import nn

from fedsys.config.loader import ConfigError
from fedsys.parts.factories import call_factory, load_factory


def test_a_factory_is_imported_and_called() -> None:
    made = call_factory("torch.nn:Linear", "model.factory", nn.Module, 3, 2)

    assert isinstance(made, nn.Linear) and made.in_features == 3


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "must look like 'package.module:function'"),
        ("fedsys_no_such_module:f", "cannot import 'fedsys_no_such_module'"),
        ("fedsys.models:no_such_function", "has no callable 'no_such_function'"),
    ],
)
def test_bad_factory_paths_are_named(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"model\.factory") as info:
        load_factory(path, "model.factory")
    assert message in str(info.value)


def test_a_factory_returning_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="returned a int, not a Module"):
        call_factory("builtins:len", "model.factory", nn.Module, [1, 2])
