"""The config reference page, generated from the pydantic schema (``RunConfig``).

Every key's dotted name, type, default, allowed values and description come from the
models themselves: a description lives on its field (``Field(description=...)``), a
section's text is its model's docstring, and a variant section (``strategy``,
``selector``, ``compression``, ``round``, ``dataset.partition``) lists each variant
under the value of its ``name``, ``kind`` or ``mode`` key.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fedsys.config.schema import RunConfig

INTRO = """\
# Config reference

One YAML (or TOML) file describes a run; every section is optional and every key has
the default shown. `fedsys config` prints the embedded default, `fedsys run CONFIG`
runs a file, and `--set key.path=value` overrides any key below, e.g.
`--set selector.name=oort --set round.mode=async`. A wrong key or value stops the run
with one line naming the key and the allowed values. A section with variants
(`selector`, `strategy`, `compression`, `round`, `dataset.partition`) is chosen by its
`name`, `kind` or `mode` key; switching it starts the section afresh.

This page is generated from `fedsys.config.schema.RunConfig` when the site is built.
"""


@dataclass(frozen=True)
class Key:
    """One row of the reference: a dotted key and what the schema says of it."""

    key: str
    type: str
    default: str
    allowed: str
    description: str


def sub_models(annotation: Any) -> list[type[BaseModel]]:
    """The config models inside an annotation (one for a section, several for variants)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in sub_models(arg)]


def _tag(model: type[BaseModel], discriminator: str) -> str:
    return str(model.model_fields[discriminator].default)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if annotation is NoneType:
        return "null"
    if origin is Literal:
        return " or ".join(sorted({_type_name(type(v)) for v in get_args(annotation)}))
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(annotation))
    if origin in (tuple, list):
        return f"list of {_type_name(get_args(annotation)[0])}"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _literals(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [value for arg in get_args(annotation) for value in _literals(arg)]


BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


def _allowed(field: FieldInfo) -> str:
    values = [_value(v) for v in _literals(field.annotation)]
    bounds = []
    for meta in field.metadata:
        for kind, attribute, sign in BOUNDS:
            if isinstance(meta, kind):
                bounds.append(f"{sign} {_value(getattr(meta, attribute))}")
    if values and type(None) in get_args(field.annotation):
        values.append("`null`")
    return ", ".join(values + bounds)


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


def _default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "required"
    return _value(default)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def keys_of(model: type[BaseModel], prefix: str = "", skip: str | None = None) -> list[Key]:
    """The leaf keys of ``model`` (not descending into sections), in schema order."""
    rows = []
    for name, field in model.model_fields.items():
        if name == skip or sub_models(field.annotation):
            continue
        key = prefix + name
        kind = _type_name(field.annotation)
        rows.append(Key(key, kind, _default(field), _allowed(field), field.description or ""))
    return rows


def variant_key(key: str, field: FieldInfo) -> Key:
    """The ``name``/``kind``/``mode`` key of a variant section: its description is the
    section field's, its allowed values are the variants'."""
    assert isinstance(field.discriminator, str)
    tags = [_value(_tag(v, field.discriminator)) for v in sub_models(field.annotation)]
    default = type(field.get_default(call_default_factory=True))
    return Key(
        f"{key}.{field.discriminator}",
        "string",
        _value(_tag(default, field.discriminator)),
        ", ".join(tags),
        field.description or "",
    )


def _table(rows: list[Key]) -> list[str]:
    if not rows:
        return ["No settings of its own.", ""]
    lines = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    lines += [
        f"| `{r.key}` | {r.type} | {r.default} | {r.allowed} | {_cell(r.description)} |"
        for r in rows
    ]
    return [*lines, ""]


def _doc(model: type[BaseModel]) -> list[str]:
    """A model's docstring as Markdown (Sphinx roles such as ``:class:`` dropped)."""
    return [re.sub(r":\w+:`", "`", inspect.cleandoc(model.__doc__ or "")), ""]


def _section(key: str, field: FieldInfo, level: int) -> list[str]:
    """A section's heading, text and keys; a variant section lists every variant."""
    lines = [f"{'#' * level} `{key}`", ""]
    if isinstance(field.discriminator, str):
        lines += _table([variant_key(key, field)])
        for variant in sub_models(field.annotation):
            tag = _tag(variant, field.discriminator)
            lines += [f"{'#' * (level + 1)} `{key}.{field.discriminator}: {tag}`", ""]
            lines += _doc(variant) + _table(keys_of(variant, key + ".", field.discriminator))
            for name, sub in variant.model_fields.items():  # a variant's own sections
                if sub_models(sub.annotation):
                    lines += _section(f"{key}.{name}", sub, level + 2)
        return lines
    (model,) = sub_models(field.annotation)
    lines += _doc(model) + _table(keys_of(model, key + "."))
    for name, sub in model.model_fields.items():
        if sub_models(sub.annotation):
            lines += _section(f"{key}.{name}", sub, level + 1)
    return lines


def _summary(field: FieldInfo) -> str:
    """One line on a section: its field's description, or its model's docstring summary."""
    if field.description:
        return _cell(field.description)
    return _cell(_doc(sub_models(field.annotation)[0])[0].split("\n\n")[0])


def config_reference_markdown() -> str:
    """The whole page: top-level keys, the sections, then one part per section."""
    sections = {n: f for n, f in RunConfig.model_fields.items() if sub_models(f.annotation)}
    lines = [INTRO, "## Top level", "", *_doc(RunConfig), *_table(keys_of(RunConfig))]
    lines += ["Sections:", ""]
    lines += [f"* [`{name}`](#{name}): {_summary(f)}" for name, f in sections.items()]
    lines.append("")
    for name, field in sections.items():
        lines += _section(name, field, 2)
    return "\n".join(lines)
