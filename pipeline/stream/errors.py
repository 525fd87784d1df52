"""Errors of the stream stages."""

from __future__ import annotations

from pipeline.errors import PipelineError


class UnknownReferenceError(PipelineError):
    """A valid record names something the fleet file does not know (a node, a site)."""
