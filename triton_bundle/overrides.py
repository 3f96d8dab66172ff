"""Command-line overrides of a spec section: the one way every command applies them.

`with_overrides(spec.loadtest.slo, p95_ms=p95_ms, min_rps=None)` returns a validated copy of the
section in which each value that is not None replaces the field; None means "keep the spec's".
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from triton_bundle.errors import BundleError

Section = TypeVar("Section", bound=BaseModel)
Parent = TypeVar("Parent", bound=BaseModel)


class InvalidOverrideError(BundleError, ValueError):
    """A command-line value that the spec section refuses (out of range, wrong kind)."""


def given(**values: Any) -> dict[str, Any]:
    """The values a user gave: None (an option left out) is dropped."""
    return {name: value for name, value in values.items() if value is not None}


def with_overrides(section: Section, **values: Any) -> Section:
    """A copy of `section` with every non-None value replacing its field, validated like the spec.

    `model_copy(update=...)` alone skips validation; the copy is dumped and validated again so an
    override obeys the same bounds as the YAML it replaces.
    """
    unknown = sorted(set(values) - set(type(section).model_fields))
    if unknown:
        raise InvalidOverrideError(f"{type(section).__name__} has no field(s) {', '.join(unknown)}")
    updated = section.model_copy(update=given(**values))
    try:
        return type(section).model_validate(updated.model_dump())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidOverrideError(f"invalid override of {type(section).__name__}: {problems}") from None


def with_section_overrides(parent: Parent, section: str, **values: Any) -> Parent:
    """A copy of `parent` (a spec) whose `section` has the non-None values applied; the spec itself is
    left as loaded, so one command's overrides never leak into another use of it."""
    if not given(**values):
        return parent
    return parent.model_copy(update={section: with_overrides(getattr(parent, section), **values)})
