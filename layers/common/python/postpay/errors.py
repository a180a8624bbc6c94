"""Domain errors with meaning; one place per entry point maps them to a response or a retry."""

from __future__ import annotations


class PostPayError(Exception):
    """Base of every error the product raises on purpose."""


class RateLimited(PostPayError):
    """Too many attempts; the user should try again later."""


class TokenInvalid(PostPayError):
    """A link token that was never issued, or was replaced by a newer one."""


class TokenExpired(PostPayError):
    """A link token past its expiry."""


class TokenUsed(PostPayError):
    """A single-use link token that was already used."""

    def __init__(self, email: str | None = None, same_browser: bool = False) -> None:
        super().__init__("token already used")
        self.email = email
        self.same_browser = same_browser


class AlreadyProvisioning(PostPayError):
    """Another request holds the provisioning lock of this account."""


class SolusUnavailable(PostPayError):
    """SolusVM could not be reached, timed out or answered 5xx: retry later."""


class SolusRejected(PostPayError):
    """SolusVM answered 4xx: our request was refused; retrying the same request will not help."""

    def __init__(self, status: int, message: str, errors: dict | None = None) -> None:
        super().__init__(f"SolusVM refused the request ({status}): {message}")
        self.status = status
        self.message = message
        self.errors = errors or {}


class AccountExists(PostPayError):
    """A conditional create found the email already taken."""


class AlreadyBilled(Exception):
    """The (client, period) already has an invoice or a nothing-to-bill record."""


class OutcomeRecorded(Exception):
    """This run already recorded an outcome for this account (a redelivered job)."""


# Card payments (raised by postpay.payments' users: the gateway adapter, collection, refunds)
class GatewayError(Exception):
    """The gateway could not be reached or refused the request for a reason other than the card."""


class GatewayRefused(GatewayError):
    """The gateway answered and refused the request: nothing was created, the attempt can be made again."""


class NotPayable(Exception):
    """A payment or refund is not possible for this invoice now; the message says why, for its reader."""


class CardNotSaved(Exception):
    """The card setup did not complete (or was not this client's): nothing is saved."""


class BadEvent(Exception):
    """A webhook request that is not a genuine, fresh, well-formed event: unsigned, forged, stale, garbled."""
