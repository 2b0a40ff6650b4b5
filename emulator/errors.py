"""Google's JSON error envelope, as every Google REST API returns it."""

from __future__ import annotations

from aiohttp import web

STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# google.rpc.Code numbers, used inside long-running operations and job `error` fields
RPC_CODE = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
            "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
            "ABORTED": 10, "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}


def rpc_status(error: dict) -> dict:
    """A google.rpc.Status ({code, message, details}; nothing else) from a stored error: the shape of a long-running
    operation's ``error`` and of a job's ``error``."""
    status = {"code": int(error.get("code", RPC_CODE["UNKNOWN"])), "message": str(error.get("message", ""))}
    if error.get("details"):
        status["details"] = list(error["details"])
    return status


class ApiError(Exception):
    """Raised by handlers; rendered as {"error": {"code", "message", "status", "details"}}."""

    def __init__(self, code: int, message: str, *, status: str | None = None, details: list | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, "UNKNOWN")
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict:
        err = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code, headers=self.headers)


def invalid_argument(field: str, description: str) -> ApiError:
    """A 400 shaped like Vertex's validation errors (google.rpc.BadRequest with fieldViolations)."""
    message = f"List of found errors:\t1.Field: {field}; Message: {description}\t"
    details = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": description}]}]
    return ApiError(400, message, details=details)


def not_found(name: str) -> ApiError:
    return ApiError(404, f"The resource '{name}' was not found.")


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, message, status="FAILED_PRECONDITION")
