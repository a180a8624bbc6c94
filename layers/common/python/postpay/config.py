"""Settings, read once from environment variables at cold start.

A missing or malformed setting fails the start with a message that names it. Logic never reads
``os.environ``: it receives the one ``Settings`` object. Secrets (the SolusVM API token) and
operator-tunable values (token price, currency, the invoice profile: seller, tax, payment
instructions) are not settings: they are fetched at run time
from Secrets Manager and SSM through ``postpay.adapters.params``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from postpay.limits import INVOICE_MAX_ATTEMPTS, SOLUSVM_READ_TIMEOUT_SECONDS


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True, kw_only=True)
class TermsDocument:
    key: str  # "tos" or "postpay"
    title: str
    url: str
    version: str


@dataclass(frozen=True, kw_only=True)
class Settings:
    public_base_url: str
    table_prefix: str
    mail_from: str
    ses_configuration_set: str | None
    solusvm_url: str
    solusvm_token_secret: str
    solusvm_timeout_seconds: float
    solusvm_page_budget_seconds: float
    solusvm_limit_group_id: int | None
    solusvm_usage_path: str
    sso_url_template: str
    token_price_parameter: str
    currency_parameter: str
    invoice_parameters_path: str  # SSM path of the seller, tax and payment instructions ("" = none)
    tos: TermsDocument
    postpay_terms: TermsDocument | None
    verify_token_ttl_hours: int
    reset_token_ttl_minutes: int
    session_idle_hours: int
    session_absolute_days: int
    signup_emails_per_address_per_hour: int
    signups_per_ip_per_hour: int
    login_failures_per_account: int
    login_failures_per_ip: int
    login_failure_window_minutes: int
    signup_min_response_ms: int
    billing_timezone: str
    due_days: int
    grace_days: int
    invoice_number_format: str
    invoice_queue_url: str | None
    invoice_max_attempts: int
    automation_function_name: str | None  # set by the stack: runs are queued by an async self-invocation
    run_join_minutes: int  # an identical operator request within this many minutes joins the first run
    # The deployment-wide budget of SolusVM usage calls in flight, and the worker's reserved concurrency:
    # each worker invocation asks at most usage_parallelism of them at once (README, Speed and scale).
    solusvm_max_concurrency: int
    invoice_worker_concurrency: int
    export_bucket: str | None = None  # where an export too large to return inline goes (presigned link)
    export_inline_bytes: int = 200_000
    # Credit notes are their own gapless series; a fixed format, so it never collides with invoice numbers.
    credit_note_number_format: str = "CN-{number:06d}"

    @property
    def usage_parallelism(self) -> int:
        """Usage calls one worker invocation makes at once: workers x this never exceeds the budget."""
        return max(1, self.solusvm_max_concurrency // self.invoice_worker_concurrency)

    # Stripe: all three unset = no card payments (the product works as before, payment by transfer)
    stripe_secret_key_secret: str | None = None
    stripe_webhook_secret_secret: str | None = None
    stripe_publishable_key: str | None = None
    stripe_api_base: str | None = None  # localstripe for make run and the tests; unset = Stripe itself
    stripe_js_url: str = "https://js.stripe.com/v3/"
    dunning_days: tuple[int, ...] = (3, 7)
    # An invoice below the gateway's minimum charge is carried into the client's next invoice instead of
    # staying payable by transfer (README, Minimum charge). Off by default; only with Stripe configured.
    carry_below_minimum: bool = False

    @property
    def stripe_enabled(self) -> bool:
        return self.stripe_secret_key_secret is not None

    @property
    def terms(self) -> list[TermsDocument]:
        return [self.tos, *([self.postpay_terms] if self.postpay_terms else [])]

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def sso_origin(self) -> str:
        parts = urlsplit(self.sso_url_template.replace("{token}", "x"))
        return f"{parts.scheme}://{parts.netloc}"

    def url(self, path: str) -> str:
        """An absolute link for emails: always from the configured base URL, never the Host header."""
        return self.public_base_url.rstrip("/") + "/" + path.lstrip("/")

    def path(self, path: str) -> str:
        """A site-relative link under the base URL's path: ``/live/signup`` when the site is served at an
        API Gateway stage URL (``https://<id>.execute-api.<region>.amazonaws.com/live/``), ``/signup`` at a
        domain root. Every page link, form action and redirect goes through here."""
        return urlsplit(self.public_base_url).path.rstrip("/") + "/" + path.lstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return _Reader(os.environ if env is None else env).settings()


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def raw(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw(name, default)
        if value is None:
            self.errors.append(f"{name} is required")
            return ""
        return value

    def url(self, name: str, default: str | None = None, *, must_have: str = "") -> str:
        value = self.text(name, default)
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            self.errors.append(f"{name} must be an http(s) URL, got {value!r}")
        elif value and must_have and must_have not in value:
            self.errors.append(f"{name} must contain {must_have}, got {value!r}")
        return value

    def integer(self, name: str, default: int | None, *, minimum: int = 0) -> int:
        value = self.raw(name)
        if value is None:
            if default is None:
                self.errors.append(f"{name} is required")
                return 0
            return default
        try:
            number = int(value)
        except ValueError:
            self.errors.append(f"{name} must be an integer, got {value!r}")
            return 0
        if number < minimum:
            self.errors.append(f"{name} must be at least {minimum}, got {number}")
        return number

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name, None, minimum=1) if self.raw(name) is not None else None

    def number(self, name: str, default: float, *, maximum: float = 10) -> float:
        value = self.raw(name)
        try:
            result = float(value) if value is not None else default
        except ValueError:
            self.errors.append(f"{name} must be a number, got {value!r}")
            return default
        if not 0 < result <= maximum:
            self.errors.append(f"{name} must be between 0 and {maximum:g} seconds, got {value!r}")
        return result

    def days(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.raw(name)
        if value is None:
            return default
        try:
            days = tuple(int(part) for part in value.split(","))
        except ValueError:
            days = ()
        if not days or any(d < 1 for d in days) or list(days) != sorted(set(days)):
            self.errors.append(f"{name} must be increasing whole days after issue, like 3,7; got {value!r}")
            return default
        return days

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            self.errors.append(f"{name} must be true or false, got {value!r}")
            return default
        return value.lower() == "true"

    def stripe(self) -> dict[str, object]:
        names = ("STRIPE_SECRET_KEY_SECRET", "STRIPE_WEBHOOK_SECRET_SECRET", "STRIPE_PUBLISHABLE_KEY")
        values = [self.raw(name) for name in names]
        if any(values) and not all(values):
            missing = ", ".join(n for n, v in zip(names, values, strict=True) if not v)
            self.errors.append(f"Stripe is half configured: set {missing} too (or none of the three)")
        publishable = values[2]
        if publishable and not publishable.startswith("pk_"):
            self.errors.append("STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_...)")
        api_base = self.url("STRIPE_API_BASE") if self.raw("STRIPE_API_BASE") else None
        return {
            "stripe_secret_key_secret": values[0] if all(values) else None,
            "stripe_webhook_secret_secret": values[1] if all(values) else None,
            "stripe_publishable_key": publishable if all(values) else None,
            "stripe_api_base": api_base,
            "stripe_js_url": self.url("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
            "dunning_days": self.days("DUNNING_DAYS", (3, 7)),
            "carry_below_minimum": self.flag("CARRY_BELOW_MINIMUM", False),
        }

    def timezone(self, name: str, default: str) -> str:
        value = self.text(name, default)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.errors.append(f"{name} must be an IANA time zone, got {value!r}")
        return value

    def parameter_path(self, name: str) -> str:
        value = self.raw(name, "") or ""
        if value and not (value.startswith("/") and value.endswith("/")):
            self.errors.append(f"{name} must be an SSM path that starts and ends with /, got {value!r}")
        return value

    def terms(self, key: str, prefix: str, title: str, *, required: bool) -> TermsDocument | None:
        if not required and self.raw(f"{prefix}_URL") is None:
            if self.raw(f"{prefix}_VERSION") is not None:
                self.errors.append(f"{prefix}_VERSION is set but {prefix}_URL is not")
            return None
        return TermsDocument(
            key=key, title=title, url=self.url(f"{prefix}_URL"), version=self.text(f"{prefix}_VERSION")
        )

    def settings(self) -> Settings:
        invoice_format = self.text("INVOICE_NUMBER_FORMAT", "INV-{number:06d}")
        try:
            invoice_format.format(number=1)
        except (KeyError, ValueError, IndexError):
            self.errors.append(f"INVOICE_NUMBER_FORMAT must format {{number}}, got {invoice_format!r}")
        mail_from = self.text("MAIL_FROM")
        if mail_from and "@" not in mail_from:
            self.errors.append(f"MAIL_FROM must be an email address, got {mail_from!r}")
        result = Settings(
            public_base_url=self.url("PUBLIC_BASE_URL"),
            table_prefix=self.text("TABLE_PREFIX"),
            mail_from=mail_from,
            ses_configuration_set=self.raw("SES_CONFIGURATION_SET"),
            solusvm_url=self.url("SOLUSVM_URL"),
            solusvm_token_secret=self.text("SOLUSVM_TOKEN_SECRET"),
            solusvm_timeout_seconds=self.number(
                "SOLUSVM_TIMEOUT_SECONDS", SOLUSVM_READ_TIMEOUT_SECONDS, maximum=SOLUSVM_READ_TIMEOUT_SECONDS
            ),
            # API Gateway gives up at 29 s: a page's SolusVM calls, retries included, stop well before.
            solusvm_page_budget_seconds=self.number("SOLUSVM_PAGE_BUDGET_SECONDS", 8.0, maximum=20),
            solusvm_limit_group_id=self.optional_integer("SOLUSVM_LIMIT_GROUP_ID"),
            solusvm_usage_path=self.text("SOLUSVM_USAGE_PATH", "users/{user_id}/usage"),
            sso_url_template=self.url("SSO_URL_TEMPLATE", must_have="{token}"),
            token_price_parameter=self.text("TOKEN_PRICE_PARAMETER"),
            currency_parameter=self.text("CURRENCY_PARAMETER"),
            invoice_parameters_path=self.parameter_path("INVOICE_PARAMETERS_PATH"),
            tos=self.terms("tos", "TOS", "Terms of Service", required=True),  # type: ignore[arg-type]
            postpay_terms=self.terms(
                "postpay", "POSTPAY_TERMS", "Post-Pay Terms & Conditions", required=False
            ),
            verify_token_ttl_hours=self.integer("VERIFY_TOKEN_TTL_HOURS", 24, minimum=1),
            reset_token_ttl_minutes=self.integer("RESET_TOKEN_TTL_MINUTES", 60, minimum=5),
            session_idle_hours=self.integer("SESSION_IDLE_HOURS", 12, minimum=1),
            session_absolute_days=self.integer("SESSION_ABSOLUTE_DAYS", 7, minimum=1),
            signup_emails_per_address_per_hour=self.integer(
                "SIGNUP_EMAILS_PER_ADDRESS_PER_HOUR", 3, minimum=1
            ),
            signups_per_ip_per_hour=self.integer("SIGNUPS_PER_IP_PER_HOUR", 20, minimum=1),
            login_failures_per_account=self.integer("LOGIN_FAILURES_PER_ACCOUNT", 10, minimum=1),
            login_failures_per_ip=self.integer("LOGIN_FAILURES_PER_IP", 50, minimum=1),
            login_failure_window_minutes=self.integer("LOGIN_FAILURE_WINDOW_MINUTES", 15, minimum=1),
            signup_min_response_ms=self.integer("SIGNUP_MIN_RESPONSE_MS", 1000, minimum=0),
            billing_timezone=self.timezone("BILLING_TIMEZONE", "UTC"),
            due_days=self.integer("DUE_DAYS", 14, minimum=0),
            grace_days=self.integer("GRACE_DAYS", 14, minimum=0),
            invoice_number_format=invoice_format,
            invoice_queue_url=self.raw("INVOICE_QUEUE_URL"),
            invoice_max_attempts=self.integer("INVOICE_MAX_ATTEMPTS", INVOICE_MAX_ATTEMPTS, minimum=1),
            automation_function_name=self.raw("AUTOMATION_FUNCTION_NAME"),
            run_join_minutes=self.integer("RUN_JOIN_MINUTES", 10, minimum=0),
            solusvm_max_concurrency=self.integer("SOLUSVM_MAX_CONCURRENCY", 4, minimum=1),
            invoice_worker_concurrency=self.integer("INVOICE_WORKER_CONCURRENCY", 1, minimum=1),
            export_bucket=self.raw("EXPORT_BUCKET"),
            # Lambda answers at most 6 MB; a spreadsheet a person opens is the point, not the answer's size.
            export_inline_bytes=self.integer("EXPORT_INLINE_BYTES", 200_000, minimum=0),
            **self.stripe(),  # type: ignore[arg-type]
        )
        if result.solusvm_max_concurrency < result.invoice_worker_concurrency:
            self.errors.append(
                f"SOLUSVM_MAX_CONCURRENCY ({result.solusvm_max_concurrency}) must be at least "
                f"INVOICE_WORKER_CONCURRENCY ({result.invoice_worker_concurrency}): each worker makes "
                "at least one SolusVM call at a time"
            )
        if self.errors:
            raise ConfigError("invalid configuration: " + "; ".join(self.errors))
        return result
