"""Wiring: builds each adapter and service once, lazily (no client at import time); tests inject fakes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from postpay.clock import Clock, SystemClock
from postpay.config import Settings
from postpay.models import Account, Invoice, InvoiceProfile, Pricing, Seller
from postpay.ports import (
    AccountStore,
    Counters,
    Dispatcher,
    Exports,
    InvoiceDesk,
    Mailer,
    PaymentGateway,
    PaymentsStore,
    Queue,
    SessionStore,
    SolusVM,
)

if TYPE_CHECKING:
    from postpay.billing.automation import Automation
    from postpay.billing.collection import Collection
    from postpay.billing.invoicing import Invoicing
    from postpay.billing.upkeep import Upkeep
    from postpay.services.client_area import ClientArea
    from postpay.services.enrollment import Enrollment
    from postpay.services.guard import PasswordGuard
    from postpay.services.provisioning import Provisioner
    from postpay.services.sessions import Sessions


class _OnFirstUse:
    """A dependency built on its first use. The Stripe gateway: its SDK costs ~0.5 s of CPU to import, and
    most invocations that wire card payments never call it (the run handler, a worker whose batch has no card
    on file, the pages without a card form). The run handler's invoicing: the daily schedule invoices on the
    1st only."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._built: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_build", "_built", "_lock"):
            raise AttributeError(name)  # copy, pickle and an instance not initialised yet find nothing here
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return getattr(self._built, name)


@dataclass(frozen=True)
class Stores:
    accounts: AccountStore
    sessions: SessionStore
    counters: Counters
    billing: InvoiceDesk


class Container:
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        # Any cached property can be replaced: Container(settings, solus=fake, clock=fixed_clock).
        for name, value in overrides.items():
            if not isinstance(getattr(type(self), name, None), cached_property):
                raise TypeError(f"unknown dependency {name!r}")
            self.__dict__[name] = value

    @cached_property
    def clock(self) -> Clock:
        return SystemClock()

    @cached_property
    def stores(self) -> Stores:
        """The DynamoDB stores, one per aggregate, built together once every model knows its table."""
        from postpay.adapters import tables
        from postpay.adapters.accounts_store import AccountsStore
        from postpay.adapters.billing_store import BillingStore
        from postpay.adapters.counters_store import CountersStore
        from postpay.adapters.sessions_store import SessionsStore

        tables.bind(self.settings.table_prefix)
        return Stores(
            accounts=AccountsStore(),
            sessions=SessionsStore(),
            counters=CountersStore(),
            billing=BillingStore(),
        )

    @cached_property
    def accounts(self) -> AccountStore:
        return self.stores.accounts

    @cached_property
    def session_store(self) -> SessionStore:
        return self.stores.sessions

    @cached_property
    def counters(self) -> Counters:
        return self.stores.counters

    @cached_property
    def billing(self) -> InvoiceDesk:
        return self.stores.billing

    @cached_property
    def solus(self) -> SolusVM:
        from postpay.adapters import params
        from postpay.adapters.solusvm import SolusVMClient

        return SolusVMClient(
            self.settings.solusvm_url,
            lambda: params.secret(self.settings.solusvm_token_secret),
            timeout_seconds=self.settings.solusvm_timeout_seconds,
            usage_path=self.settings.solusvm_usage_path,
        )

    @cached_property
    def mailer(self) -> Mailer:
        from postpay.adapters.mailer import SesMailer

        return SesMailer(self.settings.mail_from, configuration_set=self.settings.ses_configuration_set)

    def pricing(self) -> Pricing:
        from postpay.adapters import params

        return params.pricing(self.settings.token_price_parameter, self.settings.currency_parameter)

    def invoice_profile(self) -> InvoiceProfile:
        from postpay.adapters import params

        return params.invoice_profile(self.settings.invoice_parameters_path)

    def seller(self) -> Seller | None:
        """The seller for page footers; None when none is configured or SSM cannot be read right now."""
        try:
            return self.invoice_profile().seller
        except Exception:  # a page footer never fails a page
            from postpay.observability import logger

            logger.exception("invoice profile unavailable")
            return None

    def invoice_pdf(self, invoice: Invoice, *, today: date) -> bytes:
        from postpay.billing.pdf import invoice_pdf
        from postpay.payments import pay_online_url

        return invoice_pdf(invoice, today=today, pay_url=pay_online_url(self.settings, invoice))

    @cached_property
    def enrollment(self) -> Enrollment:
        from postpay.services.enrollment import Enrollment

        return Enrollment(
            settings=self.settings,
            accounts=self.accounts,
            sessions=self.session_store,
            counters=self.counters,
            mailer=self.mailer,
            clock=self.clock,
            guard=self.guard,
        )

    @cached_property
    def guard(self) -> PasswordGuard:
        from postpay.services.guard import PasswordGuard

        return PasswordGuard(settings=self.settings, counters=self.counters, clock=self.clock)

    @cached_property
    def provisioner(self) -> Provisioner:
        from postpay.services.provisioning import Provisioner

        return Provisioner(
            settings=self.settings,
            accounts=self.accounts,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
        )

    @cached_property
    def queue(self) -> Queue | None:
        from postpay.adapters.queue import SqsQueue

        return SqsQueue(self.settings.invoice_queue_url) if self.settings.invoice_queue_url else None

    @cached_property
    def dispatcher(self) -> Dispatcher | None:
        from postpay.adapters.dispatch import LambdaDispatcher

        name = self.settings.automation_function_name
        return LambdaDispatcher(name) if name else None

    @cached_property
    def invoicing(self) -> Invoicing:
        from postpay.billing.invoicing import Invoicing

        return Invoicing(
            settings=self.settings,
            accounts=self.accounts,
            billing=self.billing,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
            pricing=self.pricing,
            profile=self.invoice_profile,
            queue=self.queue,
            dispatcher=self.dispatcher,
            collect=self.collection.charge if self.collection is not None else None,
            card_to_charge=self.collection.card_to_charge if self.collection is not None else None,
            with_cards=self.collection.clients_with_cards if self.collection is not None else None,
            buyers_with_cards=self._buyers_with_cards,
        )

    def _buyers_with_cards(
        self, emails: list[str], client_ids: list[int]
    ) -> tuple[dict[str, Account], set[int]]:
        from postpay.adapters.batch_reads import buyers_with_cards

        self.stores  # noqa: B018 - binds the table names
        return buyers_with_cards(emails, client_ids)

    @cached_property
    def upkeep(self) -> Upkeep:
        from postpay.billing.upkeep import Upkeep

        return Upkeep(
            settings=self.settings,
            accounts=self.accounts,
            billing=self.billing,
            solus=self.solus,
            provisioner=self.provisioner,
            mailer=self.mailer,
            clock=self.clock,
        )

    @cached_property
    def automation(self) -> Automation:
        from postpay.billing.automation import Automation

        return Automation(
            settings=self.settings,
            # built by the first payload that uses it (a run, a rebill, a resend, a void): the daily
            # schedule's request invoices on the 1st only
            invoicing=cast("Invoicing", _OnFirstUse(lambda: self.invoicing)),
            upkeep=self.upkeep,
            billing=self.billing,
            accounts=self.accounts,
            clock=self.clock,
            exports=self.exports,
            collection=self.collection,
        )

    @cached_property
    def exports(self) -> Exports | None:
        from postpay.adapters.exports import S3Exports

        return S3Exports(self.settings.export_bucket) if self.settings.export_bucket else None

    @cached_property
    def payments(self) -> PaymentsStore:
        from postpay.adapters.payments_store import PaymentsStore as DynamoPaymentsStore

        self.stores  # noqa: B018 - binds the table names
        return DynamoPaymentsStore()

    @cached_property
    def gateway(self) -> PaymentGateway | None:
        """The card gateway, or None when Stripe is not configured (payment by transfer only)."""
        if not self.settings.stripe_enabled:
            return None
        key, webhook = self.settings.stripe_secret_key_secret, self.settings.stripe_webhook_secret_secret
        assert key is not None and webhook is not None

        def build() -> PaymentGateway:
            from postpay.adapters import params
            from postpay.adapters.stripe_gateway import StripeGateway

            return StripeGateway(
                lambda: params.secret(key),
                webhook_secret=lambda: params.secret(webhook),
                api_base=self.settings.stripe_api_base,
            )

        return cast("PaymentGateway", _OnFirstUse(build))

    @cached_property
    def collection(self) -> Collection | None:
        """Card collection, or None when Stripe is not configured."""
        if self.gateway is None:
            return None
        from postpay.billing.collection import Collection

        return Collection(
            settings=self.settings,
            payments=self.payments,
            gateway=self.gateway,
            invoices=self.billing,
            mailer=self.mailer,
            clock=self.clock,
            after_paid=self._lift_suspension,
        )

    def _lift_suspension(self, invoice: Invoice) -> None:
        from postpay.periods import local_date

        self.upkeep.lift_if_clear(invoice.email, local_date(self.clock.now(), self.settings.billing_timezone))

    @cached_property
    def client_area(self) -> ClientArea:
        from postpay.services.client_area import ClientArea

        return ClientArea(
            settings=self.settings,
            accounts=self.accounts,
            sessions=self.session_store,
            counters=self.counters,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
            pricing=self.pricing,
            guard=self.guard,
        )

    @cached_property
    def sessions(self) -> Sessions:
        from postpay.services.sessions import Sessions

        return Sessions(settings=self.settings, store=self.session_store, clock=self.clock)
