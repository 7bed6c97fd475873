"""Translate Azure SDK exceptions into :class:`CloudError` (same SDKs in both backends)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from cotenant.cloud.base import TRANSIENT_ERROR_CODES, CloudError, NotFoundError

_TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else "no message"


@contextlib.contextmanager
def cloud_errors(step: str, resource: str) -> Iterator[None]:
    """Re-raise SDK errors as CloudError naming the step and the resource."""
    try:
        yield
    except CloudError:
        raise
    except ResourceNotFoundError as exc:
        raise NotFoundError(f"{step}: not found", resource=resource,
                            code=getattr(exc.error, "code", None) if exc.error else None) from None
    except ClientAuthenticationError as exc:
        raise CloudError(f"{step}: authentication failed: {_first_line(exc.message)}",
                         resource=resource) from None
    except HttpResponseError as exc:
        code = exc.error.code if exc.error else None
        transient = exc.status_code in _TRANSIENT_STATUS or code in TRANSIENT_ERROR_CODES
        message = exc.error.message if exc.error and exc.error.message else exc.reason
        raise CloudError(f"{step}: {_first_line(str(message or ''))}", transient=transient,
                         resource=resource, code=code) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise CloudError(f"{step}: cannot reach the service: {_first_line(str(exc))}",
                         transient=True, resource=resource) from None
