"""Read pickled trace files without letting them run code.

FedScale's trace files are pickles, and unpickling runs whatever callable the file
names. :class:`RestrictedUnpickler` builds only what pickle's opcodes build without
a global lookup (dict, list, tuple, set, str, bytes, int, float, bool, None) and
refuses every global in :meth:`~RestrictedUnpickler.find_class`, with one narrow
exception: a numpy *numeric scalar* (``np.float64(162.0)``, ``np.int64(7)``) is
decoded to the equivalent Python number by our own code. Those scalars are numbers,
files written by numpy-based scripts are full of them, and admitting them never
hands the file a real numpy callable: the dtype is parsed from its type code only
(``f8``, ``i4``...), the raw bytes are read with ``np.frombuffer``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RestrictedUnpickler", "load_restricted"]

_NUMERIC_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_SCALAR_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _DtypeToken:
    """Stands in for ``numpy.dtype(code)`` while unpickling: keeps code and byte order."""

    def __init__(self, code: object, *_flags: object) -> None:
        if not isinstance(code, str) or code not in _NUMERIC_CODES:
            raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain number type")
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("malformed numpy dtype state")
        self.byteorder = state[1] if state[1] != "|" else "="


def _numeric_scalar(token: object, data: object = None) -> int | float | bool:
    """Decode a pickled numpy scalar into a Python number."""
    if not isinstance(token, _DtypeToken):
        raise pickle.UnpicklingError("numpy scalar without a numeric dtype")
    if isinstance(data, str):  # pickles written by Python 2 carry the bytes as text
        data = data.encode("latin1")
    dtype = np.dtype(token.byteorder + token.code)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar payload has the wrong size")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode`` as numpy's protocol-2 pickles use it, for latin-1 only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only latin-1 text may be turned into bytes")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits plain containers, strings and numbers, nothing else.

    Parameters
    ----------
    file
        Binary file object.
    source
        Name of the file, used in error messages.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global except the pieces of a numpy numeric scalar.

        Raises
        ------
        pickle.UnpicklingError
            Naming the file and the refused global.
        """
        if (module, name) in _SCALAR_GLOBALS:
            return _numeric_scalar
        if (module, name) == ("numpy", "dtype"):
            return _DtypeToken
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"{self._source}: refusing to load {module}.{name}: a trace file may hold "
            "only dicts, lists, strings and numbers"
        )


def load_restricted(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    pickle.UnpicklingError
        When the file names any class or function, or is truncated or not a pickle
        (the message names the file).
    """
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, str(path)).load()
        except pickle.UnpicklingError as err:
            if str(path) in str(err):
                raise
            raise pickle.UnpicklingError(f"{path}: not a readable pickle ({err})") from err
        except Exception as err:  # truncated or not a pickle at all
            raise pickle.UnpicklingError(f"{path}: not a readable pickle ({err})") from err
