"""Alpaca-shaped API errors: an HTTP status and a ``{"code": ..., "message": ...}`` body."""

from __future__ import annotations

from typing import Any

BAD_REQUEST = 40010000
UNAUTHORIZED = 40110000
FORBIDDEN = 40310000
NOT_FOUND = 40410000
UNSUPPORTED_MEDIA_TYPE = 41510000
UNPROCESSABLE = 42210000
RATE_LIMIT = 42910000
INTERNAL = 50010000


class ApiError(Exception):
    """A refused request; the handler turns it into the response, nothing else changes."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def bad_request(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, UNPROCESSABLE, message)


def forbidden(message: str, **extra: Any) -> ApiError:
    return ApiError(403, FORBIDDEN, message, **extra)


def not_found(message: str) -> ApiError:
    return ApiError(404, NOT_FOUND, message)
