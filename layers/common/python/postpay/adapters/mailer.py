"""The one module that sends mail: SES v2, HTML and plain-text parts rendered from Jinja2 templates.

A message with attachments (the invoice PDF) goes as raw MIME: multipart/mixed holding the
multipart/alternative text and HTML parts, then each attachment."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from postpay.observability import logger
from postpay.templating import render

# (file name, content type, bytes)
Attachment = tuple[str, str, bytes]


@dataclass(frozen=True)
class Composed:
    """A message ready to go: its template's name and the SES SendEmail request."""

    template: str
    request: dict[str, Any]


SUBJECTS = {
    "verify": "Confirm your email address",
    "already_registered": "You already have an account",
    "enrolled": "Your account is ready",
    "reset": "Reset your password",
    "invoice": "Invoice {invoice.number} for {period}",
    "suspended": "Your servers are suspended: invoice {invoice.number} is overdue",
    "reactivated": "Your servers are active again",
    "credit_note": "Credit note {credit_note.number}: invoice {invoice.number} is cancelled",
    "payment_failed": "We could not charge your card for invoice {invoice.number}",
    "receipt": "Receipt: invoice {invoice.number} is paid",
    "payment_refunded": "Refund: your payment of cancelled invoice {invoice.number}",
    "refund": "Refund: invoice {invoice.number}",
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

    def send(
        self, to: str, template: str, *, attachments: tuple[Attachment, ...] = (), **context: Any
    ) -> str:
        """Renders ``email/<template>.html`` and ``.txt`` and sends them; returns the SES message id.

        Links in ``context`` are absolute URLs built from the configured base URL by the caller."""
        return self.deliver(self.compose(to, template, attachments=attachments, **context))

    def compose(
        self, to: str, template: str, *, attachments: tuple[Attachment, ...] = (), **context: Any
    ) -> Composed:
        """The message ``send`` sends, rendered and encoded but not sent (the CPU of sending it)."""
        invoice = context.get("invoice")
        period = f"{invoice.period_start:%B %Y}" if invoice is not None else ""
        subject = SUBJECTS[template].format(
            invoice=invoice, period=period, credit_note=context.get("credit_note")
        )
        html = render(f"email/{template}.html", subject=subject, **context)
        text = render(f"email/{template}.txt", subject=subject, **context)
        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [to]},
        }
        if attachments:
            request["Content"] = {"Raw": {"Data": self.mime(to, subject, text, html, attachments)}}
        else:
            request["Content"] = {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": html, "Charset": "UTF-8"},
                        "Text": {"Data": text, "Charset": "UTF-8"},
                    },
                }
            }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return Composed(template, request)

    def deliver(self, message: Composed) -> str:
        """Sends a composed message; returns the SES message id."""
        message_id = self.client.send_email(**message.request)["MessageId"]
        logger.info("email sent", extra={"template": message.template, "message_id": message_id})
        return str(message_id)

    def mime(self, to: str, subject: str, text: str, html: str, attachments: tuple[Attachment, ...]) -> bytes:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = to
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return message.as_bytes()
