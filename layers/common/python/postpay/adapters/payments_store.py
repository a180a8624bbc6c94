"""DynamoDB for collection: each client's card on file and each invoice's charge, one table.

Exactly one charge per invoice is this table's job: before the gateway is called, the charge attempt is
claimed on the invoice's charge item with a conditional write (an attempt number and a lease). A second
job, a redelivery or an overlapping run finds the claim and does not call the gateway; a job that crashed
after calling it is retried once the lease has expired and looks the charge up at the gateway by its
invoice and attempt before creating one.

Refunds follow the same pattern on the same item: a refund is claimed (its number, amount, reason, pending,
under a lease) before the gateway is asked, only within what was paid, and recorded done after it answered.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action

from postpay.adapters.tables import PaymentItem, conditional_failed
from postpay.payments import Card, CardOnFile, ChargeRecord, ChargeResult, PendingRefund, VoidPayment


class PaymentsStore:
    # cards ------------------------------------------------------------------------------------------

    def card_on_file(self, client_id: int) -> CardOnFile | None:
        try:
            item = PaymentItem.get(f"card#{client_id}", consistent_read=True)
        except DoesNotExist:
            return None
        card = None
        if item.payment_method:
            card = Card(
                payment_method=item.payment_method,
                brand=item.brand or "",
                last4=item.last4 or "",
                exp_month=int(item.exp_month or 0),
                exp_year=int(item.exp_year or 0),
            )
        return CardOnFile(customer=item.customer or "", card=card)

    def clients_with_cards(self, client_ids: list[int]) -> set[int]:
        """Which of these clients have a card on file: one BatchGetItem per 100 (a worker's batch)."""
        if not client_ids:
            return set()
        keys = {f"card#{client_id}" for client_id in client_ids}
        return {
            int(item.pk.removeprefix("card#"))
            for item in PaymentItem.batch_get(
                keys, consistent_read=True, attributes_to_get=["pk", "payment_method"]
            )
            if item.payment_method
        }

    def save_customer(self, client_id: int, customer: str, now: datetime) -> str:
        """Records the client's gateway customer once; returns the one recorded (a concurrent first wins)."""
        try:
            PaymentItem(f"card#{client_id}").update(
                actions=[PaymentItem.customer.set(customer), PaymentItem.updated_at.set(now)],
                condition=PaymentItem.customer.does_not_exist(),
            )
        except UpdateError as error:
            if not conditional_failed(error):
                raise
        found = self.card_on_file(client_id)
        assert found is not None
        return found.customer

    def save_card(self, client_id: int, card: Card, now: datetime) -> None:
        PaymentItem(f"card#{client_id}").update(
            actions=[
                PaymentItem.payment_method.set(card.payment_method),
                PaymentItem.brand.set(card.brand),
                PaymentItem.last4.set(card.last4),
                PaymentItem.exp_month.set(card.exp_month),
                PaymentItem.exp_year.set(card.exp_year),
                PaymentItem.updated_at.set(now),
            ],
            condition=PaymentItem.customer.exists(),
        )

    def remove_card(self, client_id: int, now: datetime) -> None:
        PaymentItem(f"card#{client_id}").update(
            actions=[
                PaymentItem.payment_method.remove(),
                PaymentItem.brand.remove(),
                PaymentItem.last4.remove(),
                PaymentItem.exp_month.remove(),
                PaymentItem.exp_year.remove(),
                PaymentItem.updated_at.set(now),
            ],
            condition=PaymentItem.customer.exists(),
        )

    # charges ----------------------------------------------------------------------------------------

    def charge_of(self, number: str) -> ChargeRecord | None:
        try:
            item = PaymentItem.get(f"charge#{number}", consistent_read=True)
        except DoesNotExist:
            return None
        pending = None
        if item.refund_pending_minor is not None:
            pending = PendingRefund(
                seq=int(item.refund_seq or 0),
                amount_minor=int(item.refund_pending_minor),
                whole=bool(item.refund_pending_whole),
                refunded_before=int(item.refund_pending_base or 0),
                lease_until=int(item.refund_lease_until or 0),
                reason=item.refund_pending_reason or "",
                claimed_at=item.refund_pending_at,
            )
        return ChargeRecord(
            attempt=int(item.attempt or 0),
            intent_id=item.intent_id,
            outcome=item.outcome,
            reason=item.reason,
            refunded_minor=int(item.refunded_minor or 0),
            lease_until=int(item.lease_until or 0),
            attempted_on=date.fromisoformat(item.attempted_on) if item.attempted_on else None,
            payment_method=item.payment_method,
            refunds_done_minor=int(item.refunds_done_minor or 0),
            refund_seq=int(item.refund_seq or 0),
            pending_refund=pending,
        )

    def claim_charge(
        self,
        number: str,
        attempt: int,
        now: datetime,
        lease: timedelta,
        *,
        on: date | None = None,
        payment_method: str | None = None,
    ) -> bool:
        """Takes the right to make charge ``attempt`` of the invoice: the first attempt on a fresh invoice,
        the next one only after the previous one failed, the same one again only after its holder's lease
        expired without an outcome (a crash). Never after a success. ``on``: the billing time zone's date,
        kept as the day of the latest attempt (dunning retries at most once a day); ``payment_method``: the
        card the attempt charges (the dashboard tells a client whose card on file was declined)."""
        expired = int(now.timestamp())
        actions: list[Action] = [
            PaymentItem.attempt.set(attempt),
            PaymentItem.lease_until.set(int((now + lease).timestamp())),
            PaymentItem.outcome.remove(),
            PaymentItem.reason.remove(),
            PaymentItem.updated_at.set(now),
        ]
        if on is not None:
            actions.append(PaymentItem.attempted_on.set(on.isoformat()))
        if payment_method is not None:
            actions.append(PaymentItem.payment_method.set(payment_method))
        try:
            PaymentItem(f"charge#{number}").update(
                actions=actions,
                condition=PaymentItem.pk.does_not_exist()
                | ((PaymentItem.outcome == "failed") & (PaymentItem.attempt < attempt))
                | (
                    (PaymentItem.attempt == attempt)
                    & PaymentItem.outcome.does_not_exist()
                    & (PaymentItem.lease_until < expired)
                ),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    # refunds ----------------------------------------------------------------------------------------

    def claim_refund(
        self, number: str, refund: PendingRefund, *, refunded_at_most: int, now: datetime, lease: timedelta
    ) -> bool:
        """Claims refund ``refund.seq`` of the invoice before the gateway is asked: only the next number,
        only while no other refund is pending, and only while neither our refunds nor the gateway's reported
        total exceed ``refunded_at_most`` (what was paid less this refund), so a charge.refunded event
        landing between the caller's read and this write cannot let it refund more than was paid."""
        previous = (
            PaymentItem.refund_seq.does_not_exist()
            if refund.seq == 1
            else PaymentItem.refund_seq == refund.seq - 1
        )
        actions: list[Action] = [
            PaymentItem.refund_seq.set(refund.seq),
            PaymentItem.refund_pending_minor.set(refund.amount_minor),
            PaymentItem.refund_pending_whole.set(refund.whole),
            PaymentItem.refund_pending_base.set(refund.refunded_before),
            PaymentItem.refund_pending_reason.set(refund.reason),
            PaymentItem.refund_pending_at.set(now),
            PaymentItem.refund_lease_until.set(int((now + lease).timestamp())),
            PaymentItem.updated_at.set(now),
        ]
        try:
            PaymentItem(f"charge#{number}").update(
                actions=actions,
                condition=previous
                & PaymentItem.refund_pending_minor.does_not_exist()
                & (
                    PaymentItem.refunds_done_minor.does_not_exist()
                    | (PaymentItem.refunds_done_minor <= refunded_at_most)
                )
                & (
                    PaymentItem.refunded_minor.does_not_exist()
                    | (PaymentItem.refunded_minor <= refunded_at_most)
                ),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def take_refund(self, number: str, seq: int, now: datetime, lease: timedelta) -> bool:
        """Takes pending refund ``seq`` over from a holder whose lease has expired (it died, or its answer
        was lost): only one caller at a time asks the gateway for a refund."""
        try:
            PaymentItem(f"charge#{number}").update(
                actions=[
                    PaymentItem.refund_lease_until.set(int((now + lease).timestamp())),
                    PaymentItem.updated_at.set(now),
                ],
                condition=(PaymentItem.refund_seq == seq)
                & PaymentItem.refund_pending_minor.exists()
                & (
                    PaymentItem.refund_lease_until.does_not_exist()
                    | (PaymentItem.refund_lease_until < int(now.timestamp()))
                ),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def finish_refund(self, number: str, seq: int, refunded_minor: int, now: datetime) -> bool:
        """Records the gateway's answer to pending refund ``seq``: added to our refunded sum once (False:
        it was recorded already, by a retry that got there first)."""
        return self._end_refund(
            number, seq, [PaymentItem.refunds_done_minor.add(refunded_minor), PaymentItem.updated_at.set(now)]
        )

    def release_refund(self, number: str, seq: int) -> None:
        """Ends pending refund ``seq`` with nothing refunded: the gateway refused it before making it."""
        self._end_refund(number, seq, [])

    def _end_refund(self, number: str, seq: int, actions: list[Action]) -> bool:
        try:
            PaymentItem(f"charge#{number}").update(
                actions=[
                    *actions,
                    PaymentItem.refund_pending_minor.remove(),
                    PaymentItem.refund_pending_whole.remove(),
                    PaymentItem.refund_pending_base.remove(),
                    PaymentItem.refund_pending_reason.remove(),
                    PaymentItem.refund_pending_at.remove(),
                    PaymentItem.refund_lease_until.remove(),
                ],
                condition=(PaymentItem.refund_seq == seq) & PaymentItem.refund_pending_minor.exists(),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def record_refund(self, number: str, refunded_minor: int, now: datetime) -> None:
        """The gateway's refunded total of the invoice's charge (its charge.refunded event, or at least a
        refund's base plus that refund): kept only when larger than the one recorded, since events arrive in
        any order and the total only grows."""
        try:
            PaymentItem(f"charge#{number}").update(
                actions=[PaymentItem.refunded_minor.set(refunded_minor), PaymentItem.updated_at.set(now)],
                condition=PaymentItem.refunded_minor.does_not_exist()
                | (PaymentItem.refunded_minor < refunded_minor),
            )
        except UpdateError as error:
            if not conditional_failed(error):
                raise

    # payments on void invoices -----------------------------------------------------------------------

    def record_void_payment(self, number: str, intent_id: str, amount_minor: int, now: datetime) -> bool:
        """One item per PaymentIntent (a conditional put): however often the payment is reported, it is
        recorded, logged and counted once."""
        try:
            PaymentItem(
                f"voidpay#{intent_id}",
                invoice_number=number,
                intent_id=intent_id,
                amount_minor=amount_minor,
                updated_at=now,
            ).save(condition=PaymentItem.pk.does_not_exist())
        except PutError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def void_payment(self, intent_id: str) -> VoidPayment | None:
        try:
            item = PaymentItem.get(f"voidpay#{intent_id}", consistent_read=True)
        except DoesNotExist:
            return None
        return VoidPayment(
            invoice_number=item.invoice_number or "",
            intent_id=intent_id,
            amount_minor=int(item.amount_minor or 0),
            refunded_minor=int(item.refunded_minor) if item.refunded_at is not None else None,
        )

    def mark_void_payment_refunded(self, intent_id: str, refunded_minor: int, now: datetime) -> bool:
        try:
            PaymentItem(f"voidpay#{intent_id}").update(
                actions=[
                    PaymentItem.refunded_minor.set(refunded_minor),
                    PaymentItem.refunded_at.set(now),
                    PaymentItem.updated_at.set(now),
                ],
                condition=PaymentItem.pk.exists() & PaymentItem.refunded_at.does_not_exist(),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    # gateway events ---------------------------------------------------------------------------------

    def event_seen(self, event_id: str) -> bool:
        try:
            PaymentItem.get(f"event#{event_id}", consistent_read=True, attributes_to_get=["pk"])
        except DoesNotExist:
            return False
        return True

    def mark_event(self, event_id: str, event_type: str, now: datetime) -> None:
        PaymentItem(f"event#{event_id}", event_type=event_type, updated_at=now).save()

    def release_charge(self, number: str, attempt: int) -> None:
        """Ends this attempt's lease without an outcome: the gateway refused before creating anything."""
        PaymentItem(f"charge#{number}").update(
            actions=[PaymentItem.lease_until.set(0)],
            condition=(PaymentItem.attempt == attempt) & PaymentItem.outcome.does_not_exist(),
        )

    def record_charge(self, number: str, attempt: int, result: ChargeResult, now: datetime) -> None:
        actions: list[Action] = [
            PaymentItem.outcome.set(result.status),
            PaymentItem.lease_until.remove(),
            PaymentItem.updated_at.set(now),
        ]
        if result.intent_id:
            actions.append(PaymentItem.intent_id.set(result.intent_id))
        actions.append(
            PaymentItem.reason.set(result.reason) if result.reason else PaymentItem.reason.remove()
        )
        PaymentItem(f"charge#{number}").update(actions=actions, condition=PaymentItem.attempt == attempt)
