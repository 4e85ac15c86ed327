"""Errors of the OCI data model: a document that breaks its schema."""

from __future__ import annotations


class SpecError(ValueError):
    """A field of an OCI document is missing or wrong; `field` is its path (a.b[2].c)."""

    def __init__(self, field: str, problem: str, document: str = "config.json") -> None:
        super().__init__(f"{document}: {field}: {problem}")
        self.field = field
        self.problem = problem
