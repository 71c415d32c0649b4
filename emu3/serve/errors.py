"""APIError and the OpenAI error shape `{"error": {"message", "type", "param", "code"}}`.

Every failure a client can cause is an APIError with a 4xx status and the request field it concerns
(`param`, e.g. "size" or "messages[1].content[0].image_url.url"). Validation errors from pydantic are
translated into the same shape by `validation_error`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         500: "server_error", 503: "server_error", 504: "timeout_error"}  # fmt: skip
_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|.*\[.*\]|function-.*)$")


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def invalid(param: str | None, message: str, code: str = "invalid_value") -> APIError:
    """A 400 about one field."""
    return APIError(400, f"{param}: {message}" if param else message, param=param, code=code)


def param_name(loc: Sequence[Any]) -> str | None:
    """('body', 'messages', 0, 'content', 'list[ContentPart]', 1, 'text') -> 'messages[0].content[1].text'."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _UNION_BRANCH.match(str(part)):
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(errors: Sequence[dict[str, Any]]) -> APIError:
    """The most specific pydantic / FastAPI validation error as a 400 in the OpenAI shape.

    For a field that may take several types (chat `content`: a string or a list of parts), pydantic
    reports one error per type; the deepest location names the part that really is wrong."""
    if not errors:
        return invalid(None, "invalid request")
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return invalid(None, "the request body is not valid JSON", "invalid_json")
    param = param_name(loc)
    if kind == "extra_forbidden":
        return invalid(param, "this field is not supported by this server", "unsupported_parameter")
    if kind == "missing":
        return invalid(param, "this field is required", "missing_required_parameter")
    if param is None:
        return invalid(None, "the request body must be a JSON object with the documented fields")
    return invalid(param, str(first.get("msg", "invalid value")))
