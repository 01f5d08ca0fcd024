"""What the planner reads from a query's text rather than its tree.

sqlglot normalises function names (``QUANTILE_CONT`` parses as ``PercentileCont``,
``STRING_AGG`` as ``GroupConcat``, ``LIST`` as ``ArrayAgg``), so an error that names a
node names an operator the user never wrote: :func:`name_as_written` finds the spelling
in the text. sqlglot's parser recurses about twenty Python frames per nested
parenthesis, so :func:`nesting_depth` measures the nesting from the tokens (no
recursion) and :func:`recursion_room` gives the parser the stack that depth needs.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlglot
from sqlglot import exp
from sqlglot.tokens import Token, TokenType

__all__ = ["FRAMES_PER_LEVEL", "MAX_EXPRESSION_DEPTH", "MAX_NESTING", "call_names",
           "expression_depth", "name_as_written", "nesting_depth", "recursion_room", "tokens"]

MAX_NESTING = 256
"""Deepest parenthesis nesting a query may have (deeper ones are refused in one line)."""
MAX_EXPRESSION_DEPTH = 500
"""Deepest expression tree a query may have, parentheses aside (DuckDB's own limit is
1000, counted its way: the sites and the coordinator's finishing query must stay under)."""
FRAMES_PER_LEVEL = 60
"""Python frames one nesting level may take while parsing, rewriting and printing."""

_LOCK = threading.Lock()
_HOLDERS = [0, 0]  # [threads inside recursion_room, the limit to restore when none is]


def tokens(sql: str) -> list[Token]:
    """The query's tokens (DuckDB dialect).

    Raises
    ------
    sqlglot.errors.TokenError
        If the text does not tokenize (an unterminated string or comment).
    """
    return list(sqlglot.Dialect.get_or_raise("duckdb").tokenize(sql))


def nesting_depth(toks: list[Token]) -> int:
    """The deepest nesting of parentheses and brackets in ``toks``."""
    depth = deepest = 0
    for token in toks:
        if token.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth = max(0, depth - 1)
    return deepest


def expression_depth(root: exp.Expression) -> int:
    """The depth of ``root``'s tree, not counting parentheses (measured without recursion)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.iter_expressions():
            stack.append((child, depth if isinstance(child, exp.Paren) else depth + 1))
    return deepest


@contextmanager
def recursion_room(depth: int) -> Iterator[None]:
    """Raise Python's recursion limit enough for a query nested ``depth`` deep.

    The limit is process-wide: it is raised while any thread is inside and restored
    when the last one leaves. Python 3.11+ keeps pure-Python frames off the C stack,
    so a higher limit costs heap, not a stack overflow.
    """
    needed = 1000 + FRAMES_PER_LEVEL * depth
    with _LOCK:
        if _HOLDERS[0] == 0:
            _HOLDERS[1] = sys.getrecursionlimit()
        _HOLDERS[0] += 1
        if needed > sys.getrecursionlimit():
            sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        with _LOCK:
            _HOLDERS[0] -= 1
            if _HOLDERS[0] == 0:
                sys.setrecursionlimit(_HOLDERS[1])


def call_names(toks: list[Token]) -> list[str]:
    """Every function name written in the query (a word followed by ``(``), in order."""
    return [a.text.upper() for a, b in itertools.pairwise(toks)
            if b.token_type == TokenType.L_PAREN and a.text[:1].isalpha()
            and a.text.replace("_", "").isalnum()]


def name_as_written(node: exp.Expression, sql: str, written: list[str]) -> str:
    """The name of the call ``node`` as the user spelled it (upper case).

    Parameters
    ----------
    node
        A function call of the parsed query.
    sql
        The query's text.
    written
        :func:`call_names` of the query.
    """
    start, end = node.meta.get("start"), node.meta.get("end")
    if isinstance(start, int) and isinstance(end, int) and sql[start:end + 1].strip():
        return sql[start:end + 1].upper()
    for name in written:
        if _parsed_class(name) is type(node):
            return name
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    return node.sql_name().upper() if isinstance(node, exp.Func) else type(node).__name__


@functools.lru_cache(maxsize=512)
def _parsed_class(name: str) -> type[exp.Expression] | None:
    """The node class sqlglot builds for a call of ``name`` (``None`` if it cannot)."""
    for args in ("_a", "_a, _b"):
        try:
            return type(sqlglot.parse_one(f"{name}({args})", read="duckdb"))
        except sqlglot.errors.SqlglotError:
            continue
    return None
