"""DynamoDB for invoices and the per-account outcomes of the runs that issue them.

Exactly once is the database's job here, not a check-then-insert:
- ``invoices`` is keyed by (client, period): a conditional put makes a second invoice impossible;
- invoice numbers come from a counter updated *in the same transaction* as the invoice, conditioned on its
  previous value: a number is used only if its invoice is written, so numbers are sequential and gapless;
- ``run-outcomes`` is keyed by (run, client): each run counts each account once, in that same transaction.

An invoice that carries earlier invoices' balances (CARRY_BELOW_MINIMUM) takes them in that same transaction:
each carried invoice is updated to name it, conditioned on still being carried and taken by none, so a
balance is carried into exactly one invoice whatever runs, duplicates and redeliveries overlap.

A re-bill of a voided month replaces the void invoice (and only it, by its number) in that transaction and
keeps it, unchanged, under "<client>#<period>#<its number>": the month is billed once more, with the next
number of the same gapless counter. The operator's desk (voids, credit notes, listings) is InvoiceDeskStore.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from postpay.adapters.invoice_documents import invoice_item, nothing_item, to_invoice
from postpay.adapters.invoice_reads import InvoiceReads
from postpay.adapters.runs_store import RunsStore
from postpay.adapters.tables import (
    CounterItem,
    InvoiceItem,
    OutcomeItem,
    RunItem,
    connection,
    on_send,
)
from postpay.errors import AlreadyBilled, OutcomeRecorded
from postpay.models import CarriedBalance, Invoice, InvoiceStatus, ToIssue
from postpay.observability import logger

INVOICE_COUNTER = "invoice_number"


# A transaction's items: per entry its record, its outcome, its run's update (when every entry belongs to
# another run), on the re-bill of a void month the void invoice kept, and one per carried invoice it takes;
# and the counter. Within DynamoDB's 100 items per TransactWriteItems: 33 entries of 3 items, fewer when some
# re-bill a void month or take carried balances.
MAX_ITEMS_PER_TRANSACTION = 100
MAX_ATTEMPTS = 50
# what a cancelled batch transaction is retried for at once (None / "None": the item passed)
_RETRIED_CODES = {None, "None", "ConditionalCheckFailed", "TransactionConflict"}


def _run_counts(
    entries: list[ToIssue], pending: list[int], invoices: dict[int, Invoice], replace_failed: set[int]
) -> dict[str, dict[str, int]]:
    """What each run's counters gain from a transaction: one update per run (one operation per item)."""
    counts: dict[str, dict[str, int]] = {}
    for index in pending:
        run = counts.setdefault(entries[index].run_id, {"invoiced": 0, "nothing_to_bill": 0, "failed": 0})
        run["invoiced" if index in invoices else "nothing_to_bill"] += 1
        if index in replace_failed:
            run["failed"] -= 1
    return counts


def _chunks(weights: list[int], chosen: list[int]) -> Iterator[list[int]]:
    """The chosen entries in order, cut so each transaction stays within MAX_ITEMS_PER_TRANSACTION."""
    chunk: list[int] = []
    used = 1  # the counter
    for index in chosen:
        if chunk and used + weights[index] > MAX_ITEMS_PER_TRANSACTION:
            yield chunk
            chunk, used = [], 1
        chunk.append(index)
        used += weights[index]
    if chunk:
        yield chunk


class BillingStore(InvoiceReads, RunsStore):
    """Issuing invoices; reading and emailing them is InvoiceReads, the runs they count in come from
    RunsStore, the operator's desk on them from InvoiceDeskStore."""

    _counter_hint: int | None = None  # the counter as last seen: the next number's first guess (no read)
    # (run id, the open carried balances by their key) as this environment last read them: _open_carried
    _carried_of_run: tuple[str, dict[str, InvoiceItem]] | None = None

    # issuing ---------------------------------------------------------------------------------------

    @staticmethod
    def note_counter(value: int) -> int:
        """The counter as read just now (here, or with a worker's batch): the next batch's first guess."""
        BillingStore._counter_hint = value
        return value

    def counter_value(self) -> int:
        try:
            return self.note_counter(int(CounterItem.get(INVOICE_COUNTER, consistent_read=True).value or 0))
        except CounterItem.DoesNotExist:
            return self.note_counter(0)

    def issue(
        self,
        invoice_for: Callable[..., Invoice],
        *,
        run_id: str,
        now: datetime,
        email_lease: timedelta,
        replace_nothing: bool = False,
    ) -> Invoice:
        """One invoice: ``issue_batch`` of one. Raises AlreadyBilled or OutcomeRecorded."""
        probe = invoice_for(0)
        entry = ToIssue(
            probe.client_id,
            probe.period_key,
            run_id,
            probe.email,
            probe.usage,
            invoice_for=invoice_for,
            replace_nothing=replace_nothing,
        )
        result = self.issue_batch([entry], now=now, email_lease=email_lease)[0]
        if isinstance(result, Exception):
            raise result
        assert result is not None
        return result

    def record_nothing(
        self, *, client_id: int, email: str, period_key: str, usage: str, run_id: str, now: datetime
    ) -> None:
        """No usage: a nothing-to-bill record for (client, period) and the run's outcome, together."""
        entry = ToIssue(client_id, period_key, run_id, email, usage)
        result = self.issue_batch([entry], now=now, email_lease=timedelta(0))[0]
        if isinstance(result, Exception):
            raise result

    def issue_batch(
        self,
        entries: list[ToIssue],
        *,
        now: datetime,
        email_lease: timedelta,
        sending: Callable[[dict[int, Invoice]], None] | None = None,
    ) -> list[Invoice | AlreadyBilled | OutcomeRecorded | None]:
        """Writes a batch's invoices (numbered in order, gapless), nothing-to-bill records, their run outcomes
        and the runs' counts in as few transactions as DynamoDB allows (MAX_ITEMS_PER_TRANSACTION items each).

        Per entry: the Invoice issued, None (nothing to bill recorded), or AlreadyBilled / OutcomeRecorded
        (the entry was left out: its (client, period) or its (run, client) was written before). A cancelled
        transaction names the items that failed: those entries are dropped and the rest retried; a moved
        counter is read from the cancellation itself (ALL_OLD), so contention costs one more attempt per
        batch, not per invoice. Any other failure raises: nothing of the transaction was written. ``sending``
        is told the invoices (by entry) of the first transaction as it goes out: they are the ones issued
        unless it is cancelled."""
        results: list[Invoice | AlreadyBilled | OutcomeRecorded | None] = [None] * len(entries)
        first: dict[str, int] = {}
        later: set[int] = set()
        for index, entry in enumerate(entries):
            if first.setdefault(entry.key, index) != index:
                later.add(index)  # one operation per item in a transaction: the copy waits for the first
        chosen = [i for i in range(len(entries)) if i not in later]
        # the void invoices re-bills replace (read once: the transaction's condition names their number)
        voids = {
            i: v for i in chosen if entries[i].replace_nothing and (v := self._void_here(entries[i].key))
        }
        carried = self._carried_into(entries, chosen)
        weights = [(4 if i in voids else 3) + len(carried.get(i, ())) for i in range(len(entries))]
        for chunk in _chunks(weights, chosen):
            self._issue_chunk(entries, chunk, results, now, email_lease, voids, carried, sending)
            sending = None
        for index in later:
            results[index] = AlreadyBilled(entries[index].key)  # the copy of an entry billed just before
        return results

    def _carried_into(self, entries: list[ToIssue], chosen: list[int]) -> dict[int, list[InvoiceItem]]:
        """The carried invoices not yet taken that the batch's invoices take: each by the first invoice of
        its client for a later period, so no carried invoice is in two of them (one read for the batch,
        none when the batch issues no invoice; one for all the batches of a run this environment issues,
        see ``_open_carried``). An index read (eventually consistent): a balance carried a moment ago may
        be missed and then waits for the invoice after; the transaction's condition is what makes it taken
        once. A taken one has left the index (no due_on); the filter is the belt to that."""
        billing = [i for i in chosen if entries[i].invoice_for is not None]
        if not billing:
            return {}
        clients = {entries[i].client_id for i in billing}
        found = [
            item
            for item in self._open_carried({entries[i].run_id for i in billing})
            if item.client_id in clients
        ]
        currency = {item.account_period: to_invoice(item).currency for item in found}
        carried: dict[int, list[InvoiceItem]] = {}
        for item in sorted(found, key=lambda it: it.period_key):
            taker = next(
                (
                    i
                    for i in billing
                    if entries[i].client_id == item.client_id
                    and entries[i].period_key > item.period_key
                    # a balance in another currency is never added: it stays carried (README)
                    and entries[i].currency == currency[item.account_period]
                ),
                None,
            )
            if taker is not None:
                carried.setdefault(taker, []).append(item)
        return carried

    def _open_carried(self, runs: set[str]) -> list[InvoiceItem]:
        """Every balance carried and not yet taken, read once per run in this environment: a run bills one
        period, and the balances its invoices take are of earlier periods, carried before it started (the
        ones it carries itself wait for a later period's invoice). So a batch of the run reads them from the
        run's first batch here, less the ones this environment's invoices took since; a balance carried or
        released (a void) meanwhile, by an overlapping run or the operator, waits for the invoice after, as
        one carried a moment before the read does. One taken by another environment (or voided and billed
        again) fails the taking transaction's condition: it is dropped then, and the run's next batch here
        reads them again (``_after_cancel``). A batch of several runs reads."""
        run = next(iter(runs)) if len(runs) == 1 else None
        cached = self._carried_of_run
        if run is not None and cached is not None and cached[0] == run:
            return list(cached[1].values())
        found = {
            item.account_period: item
            for item in InvoiceItem.by_status.query(
                InvoiceStatus.CARRIED.value, filter_condition=InvoiceItem.carried_to.does_not_exist()
            )
            if item.outcome == "invoiced"
        }
        if run is not None:
            self._carried_of_run = (run, found)
        return list(found.values())

    def _taken(self, items: Iterable[InvoiceItem]) -> None:
        """Carried invoices this environment's invoices just took: no longer open for this run."""
        cached = self._carried_of_run
        keys = {item.account_period for item in items}
        if cached is not None and keys & cached[1].keys():  # a new map: never changed while being read
            self._carried_of_run = (cached[0], {k: v for k, v in cached[1].items() if k not in keys})

    def _issue_chunk(
        self,
        entries: list[ToIssue],
        pending: list[int],
        results: list[Invoice | AlreadyBilled | OutcomeRecorded | None],
        now: datetime,
        lease: timedelta,
        voids: dict[int, InvoiceItem],
        carried: dict[int, list[InvoiceItem]],
        sending: Callable[[dict[int, Invoice]], None] | None = None,
    ) -> None:
        current = self._counter_hint if self._counter_hint is not None else self.counter_value()
        replace_failed: set[int] = set()
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                return
            invoices: dict[int, Invoice] = {}
            with_invoice = [i for i in pending if entries[i].invoice_for is not None]
            for offset, index in enumerate(with_invoice, start=1):
                build = entries[index].invoice_for
                assert build is not None
                balances = tuple(
                    CarriedBalance(number=str(it.number), amount=to_invoice(it).total)
                    for it in carried.get(index, ())
                )
                invoices[index] = (
                    build(current + offset, carried=balances) if balances else build(current + offset)
                )
            # the carried invoices these invoices take: updated after the runs, in this order
            consumed = [(i, it) for i in pending if i in invoices for it in carried.get(i, ())]
            runs = _run_counts(entries, pending, invoices, replace_failed)
            if sending is not None and invoices and attempt == 0:
                on_send(functools.partial(sending, dict(invoices)))
            try:
                with TransactWrite(connection=connection()) as tx:
                    # puts first, in entry order: [record, outcome, (void kept)] of entry 0, of entry 1, ...
                    for index in pending:
                        entry = entries[index]
                        invoice = invoices.get(index)
                        item = (
                            invoice_item(invoice, run_id=entry.run_id, now=now, lease=lease)
                            if invoice is not None
                            else nothing_item(entry, now=now)
                        )
                        free = InvoiceItem.account_period.does_not_exist()
                        void = voids.get(index)
                        if void is not None:  # this void invoice, and nothing else, may be replaced
                            free = (InvoiceItem.status == InvoiceStatus.VOID.value) & (
                                InvoiceItem.number == void.number
                            )
                        elif entry.replace_nothing:
                            free = free | (InvoiceItem.outcome == "nothing_to_bill")
                        tx.save(item, condition=free)
                        tx.save(
                            OutcomeItem(
                                entry.run_id,
                                entry.client_id,
                                outcome="invoiced" if invoice is not None else "nothing_to_bill",
                                invoice_number=invoice.number if invoice is not None else None,
                                at=now,
                            ),
                            condition=(OutcomeItem.outcome == "failed")
                            if index in replace_failed
                            else OutcomeItem.run_id.does_not_exist(),
                            return_values="ALL_OLD",
                        )
                        if void is not None:
                            kept = InvoiceItem(
                                **{**void.attribute_values, "account_period": f"{entry.key}#{void.number}"}
                            )
                            tx.save(kept, condition=InvoiceItem.account_period.does_not_exist())
                    # then updates: [counter (when there are invoices), run, run, ...]
                    if invoices:
                        tx.update(
                            CounterItem(INVOICE_COUNTER),
                            actions=[CounterItem.value.set(current + len(invoices))],
                            condition=CounterItem.value == current
                            if current
                            else CounterItem.name.does_not_exist(),
                            return_values="ALL_OLD",
                        )
                    for run_id, counts in runs.items():
                        actions: list[Action] = [RunItem.updated_at.set(now)]
                        actions += [getattr(RunItem, name).add(n) for name, n in counts.items() if n]
                        tx.update(RunItem(run_id), actions=actions, condition=RunItem.run_id.exists())
                    for index, it in consumed:  # taken by this invoice only if no one took it first
                        tx.update(
                            InvoiceItem(it.account_period),
                            # without due_on it leaves the status index: that holds only balances waiting,
                            # so the batch's read of them does not grow with every balance ever carried
                            actions=[
                                InvoiceItem.carried_to.set(invoices[index].number),
                                InvoiceItem.due_on.remove(),
                            ],
                            condition=(InvoiceItem.status == InvoiceStatus.CARRIED.value)
                            & InvoiceItem.carried_to.does_not_exist()
                            & (InvoiceItem.number == it.number),
                        )
            except TransactWriteError as error:
                reasons = error.cancellation_reasons
                if not reasons:
                    raise  # not a cancellation (throttled, network): the queue retries the batch
                current, pending = self._after_cancel(
                    entries,
                    pending,
                    invoices,
                    reasons,
                    results,
                    replace_failed,
                    current,
                    voids,
                    runs=len(runs),
                    consumed=consumed,
                    carried=carried,
                )
                if attempt >= 1:
                    logger.info("invoice counter contended", extra={"attempt": attempt + 1})
                continue
            finally:
                on_send(None)  # told at most once, and never by a later transaction
            for index in pending:
                results[index] = invoices.get(index)
            BillingStore._counter_hint = current + len(invoices)
            self._taken(it for _, it in consumed)
            return
        raise RuntimeError(f"could not issue a batch of invoices after {MAX_ATTEMPTS} attempts")

    def _after_cancel(
        self,
        entries: list[ToIssue],
        pending: list[int],
        invoices: dict[int, Invoice],
        reasons: list[Any],
        results: list[Invoice | AlreadyBilled | OutcomeRecorded | None],
        replace_failed: set[int],
        current: int,
        voids: dict[int, InvoiceItem],
        *,
        runs: int,
        consumed: list[tuple[int, InvoiceItem]],
        carried: dict[int, list[InvoiceItem]],
    ) -> tuple[int, list[int]]:
        """Reads which items a cancelled transaction refused: drops entries billed before, turns a redriven
        job's "failed" outcome into a replaceable one, takes the counter's value as it was, and drops a
        carried invoice someone else took (or paid, or voided) from the invoice that was to take it."""
        codes = [(r.code if r else None, r.raw_item if r else None) for r in reasons]
        unexpected = {code for code, _ in codes} - _RETRIED_CODES
        if unexpected:  # throttled, too large, invalid: not for this loop to retry at once
            raise RuntimeError(f"invoice transaction cancelled: {', '.join(sorted(map(str, unexpected)))}")
        puts = sum(3 if index in voids else 2 for index in pending)
        first_carried = puts + (1 if invoices else 0) + runs
        codes += [(None, None)] * (first_carried + len(consumed) - len(codes))
        for (index, item), (code, _) in zip(consumed, codes[first_carried:], strict=True):
            if code == "ConditionalCheckFailed":
                fresh = InvoiceItem.get(item.account_period, consistent_read=True)
                if (
                    fresh.status != InvoiceStatus.CARRIED.value
                    or fresh.carried_to is not None
                    or fresh.number != item.number  # voided and billed again since it was read
                ):
                    carried[index] = [it for it in carried[index] if it.account_period != item.account_period]
                    self._carried_of_run = None  # the run's next batch reads the balances again
        codes = codes[:first_carried]
        retry: list[int] = []
        position = 0
        for index in pending:
            (record_code, _), (outcome_code, old_outcome) = codes[position], codes[position + 1]
            kept_code = codes[position + 2][0] if index in voids else None
            position += 3 if index in voids else 2
            key = entries[index].key
            if record_code == "ConditionalCheckFailed" or kept_code == "ConditionalCheckFailed":
                results[index] = AlreadyBilled(key)
            elif outcome_code == "ConditionalCheckFailed":
                old = (old_outcome or {}).get("outcome", {}).get("S")
                if index in replace_failed or old != "failed":
                    results[index] = OutcomeRecorded(key)
                else:
                    replace_failed.add(index)  # a dead-lettered job redriven: "failed" becomes this outcome
                    retry.append(index)
            else:
                retry.append(index)
        updates = codes[puts:]
        counter_code, counter_old = updates[0] if invoices else (None, None)
        if any(code == "ConditionalCheckFailed" for code, _ in updates[1 if invoices else 0 :]):
            raise RuntimeError("an invoicing run record is missing")
        if counter_code == "ConditionalCheckFailed" and counter_old and "value" in counter_old:
            current = int(counter_old["value"]["N"])
            BillingStore._counter_hint = current
        elif counter_code is not None or any(code == "TransactionConflict" for code, _ in codes):
            current = self.counter_value()
        return current, retry
