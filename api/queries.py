"""What the read routes share: query parameters refused when unknown or repeated, and the
parameter types of filters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request

from api.schemas import PRINTABLE

Text = Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500)]


def known_query(*names: str) -> Any:
    """A dependency refusing query parameters the route does not know (a typo in a filter
    must not silently return everything), and a filter given twice (one of the two would be
    dropped silently)."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        repeated = sorted(name for name in set(request.query_params) & allowed
                          if len(request.query_params.getlist(name)) > 1)
        problems = [{"field": name, "type": "unknown_parameter",
                     "message": f"unknown parameter; known: {', '.join(sorted(allowed))}"}
                    for name in unknown]
        problems += [{"field": name, "type": "repeated_parameter",
                      "message": "given more than once: one value per filter"}
                     for name in repeated]
        if problems:
            raise HTTPException(422, problems)

    return Depends(check)
