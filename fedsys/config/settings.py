"""The base of every run-config model, and the check that a variant uses its keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def refuse_unused(
    section: BaseModel, prefix: str, used: set[str], variant: str | None = None
) -> None:
    """Refuse keys given a non-default value that the chosen variant ignores."""
    ignored = [
        name
        for name in sorted(section.model_fields_set - used - {"name", "source"})
        if getattr(section, name)
        != type(section).model_fields[name].get_default(call_default_factory=True)
    ]
    if ignored:
        keys = ", ".join(f"{prefix}.{name}" for name in ignored)
        variant = variant or getattr(section, "name", None) or getattr(section, "source", "")
        raise ValueError(f"{keys} does not apply to {prefix} {variant!r}: remove it")
