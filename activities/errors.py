"""Business failures as Temporal sees them.

Data that fails validation mid-flight (a ``ValueError`` or pydantic ``ValidationError`` raised by
domain rules, the store or a document template) will fail the same way on every retry, so it is
turned into a non-retryable ``ApplicationError`` (type ``InvalidInput``): the onboarding moves to
``blocked`` for ops at once instead of retrying until its schedule-to-close runs out. Infrastructure
errors (database, network) stay retryable.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

BUSINESS_ERRORS: tuple[type[BaseException], ...] = (ValidationError, ValueError)


def as_business_failure(exc: BaseException) -> ApplicationError:
    return ApplicationError(f"{type(exc).__name__}: {exc}"[:2000], type="InvalidInput", non_retryable=True)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError:
            raise
        except BUSINESS_ERRORS as exc:
            activity.logger.warning("activity %s: business failure %s", activity.info().activity_type,
                                    type(exc).__name__)
            raise as_business_failure(exc) from exc


class BusinessFailureInterceptor(Interceptor):
    """Register on the worker (``interceptors=[BusinessFailureInterceptor()]``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
