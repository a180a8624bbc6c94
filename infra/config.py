"""Deployment settings from CDK context (`cdk deploy -c key=value`), validated, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ContextError(ValueError):
    """A context value is missing or malformed; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    stage: str = "prod"
    domain_name: str = ""  # custom domain for the API (needs certificate_arn); else the API's stage URL
    certificate_arn: str = ""
    hosted_zone_id: str = ""  # Route 53 zone of domain_name: the stack creates its alias record there
    hosted_zone_name: str = ""
    use_existing_ses_identity: bool = False  # the sender domain's SES identity exists (another stage, or
    # the provider's own mail): use it instead of creating one
    sender_address: str = "billing@example.com"
    sender_domain: str = "example.com"
    solusvm_url: str = "https://solusvm.example.com/api/v1/"
    sso_url_template: str = "https://solusvm.example.com/?token={token}"
    solusvm_limit_group_id: str = ""
    tos_url: str = "https://example.com/terms"
    tos_version: str = "1"
    postpay_terms_url: str = ""
    postpay_terms_version: str = ""
    billing_timezone: str = "UTC"
    due_days: int = 14
    grace_days: int = 14
    invoice_number_format: str = "INV-{number:06d}"
    token_price: str = "0.001"  # noqa: S105 - a price, not a password
    currency: str = "USD"
    # The invoice profile: SSM parameters under /postpay/<stage>/invoice/, editable without a deploy.
    seller_name: str = ""
    seller_address: str = ""  # lines separated by "\n" (or " | ")
    seller_tax_id: str = ""
    seller_email: str = ""
    seller_website: str = ""
    seller_logo: str = ""  # data:image/png;base64,...
    tax_rate: str = "0"  # percent
    tax_label: str = "VAT"
    tax_mode: str = "exclusive"  # or "inclusive"
    reverse_charge: str = "off"  # "on": no tax for a client whose tax id is of another country
    payment_instructions: str = ""
    waf_rate_limit: int = 100  # requests per 5 min per IP on sign-up, verify, log-in, reset, password change
    api_rate_limit: int = 50  # stage throttling, requests per second
    api_burst_limit: int = 100
    log_retention_days: int = 90
    alarm_email: str = ""
    stripe_publishable_key: str = ""  # set (with both Stripe secrets filled) to turn card payments on
    dunning_days: str = "3,7"  # retries of a failed automatic charge, days after issue
    # with card payments on: an invoice below the minimum charge is carried into the next one (README)
    carry_below_minimum: bool = False

    def invoice_profile(self) -> dict[str, str]:
        """The SSM parameters (names relative to the invoice path) that the non-empty values become."""
        values = {
            "seller/name": self.seller_name,
            "seller/address": "\n".join(
                line.strip() for line in self.seller_address.replace(" | ", "\n").splitlines() if line.strip()
            ),
            "seller/tax-id": self.seller_tax_id,
            "seller/email": self.seller_email,
            "seller/website": self.seller_website,
            "seller/logo": self.seller_logo,
            "tax/rate": self.tax_rate,
            "tax/label": self.tax_label,
            "tax/mode": self.tax_mode,
            "tax/reverse-charge": self.reverse_charge,
            "payment-instructions": self.payment_instructions,
        }
        return {name: value for name, value in values.items() if value}

    @classmethod
    def from_context(cls, get: Any) -> StackConfig:
        """``get`` is ``node.try_get_context``; keys are the field names in camelCase."""
        if get("publicBaseUrl"):
            raise ContextError(
                "context publicBaseUrl is no longer read: the stack sets the site's address itself "
                "(https://<domainName>/ with a custom domain, else the API's own stage URL); remove it"
            )
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = _camel(field.name)
            raw = get(key)
            if raw is None or raw == "":
                continue
            if field.type == "bool":
                values[field.name] = _boolean(key, raw)
            elif field.type == "int":
                try:
                    values[field.name] = int(raw)
                except (TypeError, ValueError) as error:
                    raise ContextError(f"context {key} must be an integer, got {raw!r}") from error
            else:
                values[field.name] = str(raw)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for key in ("solusvm_url", "sso_url_template", "tos_url"):
            value = getattr(self, key)
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.netloc:
                raise ContextError(f"context {_camel(key)} must be an https URL, got {value!r}")
        if "{token}" not in self.sso_url_template:
            raise ContextError("context ssoUrlTemplate must contain {token}")
        if bool(self.domain_name) != bool(self.certificate_arn):
            raise ContextError("context domainName and certificateArn go together")
        if bool(self.hosted_zone_id) != bool(self.hosted_zone_name):
            raise ContextError("context hostedZoneId and hostedZoneName go together")
        if self.hosted_zone_id and not self.domain_name:
            raise ContextError("context hostedZoneId needs domainName (the record it would create)")
        zone = self.hosted_zone_name.rstrip(".")
        if zone and self.domain_name != zone and not self.domain_name.endswith("." + zone):
            raise ContextError(f"context domainName {self.domain_name!r} is not in hostedZoneName {zone!r}")
        if self.domain_name and ("/" in self.domain_name or ":" in self.domain_name):
            raise ContextError(f"context domainName must be a host name, got {self.domain_name!r}")
        if bool(self.postpay_terms_url) != bool(self.postpay_terms_version):
            raise ContextError("context postpayTermsUrl and postpayTermsVersion go together")
        if not self.sender_address.endswith("@" + self.sender_domain):
            raise ContextError("context senderAddress must be an address of senderDomain")
        if not self.stage.isalnum():
            raise ContextError(f"context stage must be alphanumeric, got {self.stage!r}")
        try:
            ZoneInfo(self.billing_timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ContextError(
                f"context billingTimezone must be an IANA zone, got {self.billing_timezone!r}"
            ) from error
        from postpay.adapters.params import ParameterError, profile_from

        try:  # the same checks the functions apply when they read the parameters
            profile_from("", self.invoice_profile())
        except ParameterError as error:
            raise ContextError(f"context for the invoice profile (seller*, tax*, ...): {error}") from error
        if self.stripe_publishable_key and not self.stripe_publishable_key.startswith("pk_"):
            raise ContextError("context stripePublishableKey must be a publishable key (pk_...)")
        if self.waf_rate_limit < 10:
            raise ContextError("context wafRateLimit must be at least 10 (WAF's minimum)")


def _boolean(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise ContextError(f"context {key} must be true or false, got {raw!r}")
    return text == "true"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
