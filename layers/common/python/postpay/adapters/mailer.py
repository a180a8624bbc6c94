"""The one module that sends mail: SES v2, HTML and plain-text parts rendered from Jinja2 templates."""

from __future__ import annotations

from typing import Any

from postpay.observability import logger
from postpay.templating import render

SUBJECTS = {
    "verify": "Confirm your email address",
    "already_registered": "You already have an account",
    "enrolled": "Your account is ready",
    "reset": "Reset your password",
    "invoice": "Invoice {invoice.number} for {period}",
    "suspended": "Your servers are suspended: invoice {invoice.number} is overdue",
    "reactivated": "Your servers are active again",
}


class SesMailer:
    def __init__(self, sender: str, *, configuration_set: str | None = None, client: Any = None) -> None:
        self.sender = sender
        self.configuration_set = configuration_set
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sesv2")
        return self._client

    def send(self, to: str, template: str, **context: Any) -> str:
        """Renders ``email/<template>.html`` and ``.txt`` and sends them; returns the SES message id.

        Links in ``context`` are absolute URLs built from the configured base URL by the caller."""
        invoice = context.get("invoice")
        period = f"{invoice.period_start:%B %Y}" if invoice is not None else ""
        subject = SUBJECTS[template].format(invoice=invoice, period=period)
        html = render(f"email/{template}.html", subject=subject, **context)
        text = render(f"email/{template}.txt", subject=subject, **context)
        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": html, "Charset": "UTF-8"},
                        "Text": {"Data": text, "Charset": "UTF-8"},
                    },
                }
            },
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        message_id = self.client.send_email(**request)["MessageId"]
        logger.info("email sent", extra={"template": template, "message_id": message_id})
        return str(message_id)
