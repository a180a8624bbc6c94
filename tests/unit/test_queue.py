"""The jobs queue sends a run's jobs as they are listed, ten at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from postpay.adapters.queue import SqsQueue


class Sqs:
    def __init__(self, refuse_first: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.drawn_at_send: list[int] = []
        self.refuse = refuse_first
        self.drawn = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self.batches.append([e["MessageBody"] for e in Entries])
        self.drawn_at_send.append(self.drawn)
        refused, self.refuse = Entries[: self.refuse], max(0, self.refuse - len(Entries))
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e not in refused],
            "Failed": [{"Id": e["Id"], "SenderFault": False} for e in refused],
        }


def listed(sqs: Sqs, count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        sqs.drawn += 1
        yield {"job": index}


def test_each_ten_jobs_go_out_as_soon_as_they_are_listed():
    sqs = Sqs()
    assert SqsQueue("url", client=sqs).send_all(listed(sqs, 25)) == 25
    assert [len(b) for b in sqs.batches] == [10, 10, 5]
    assert sqs.drawn_at_send == [10, 20, 25], "the first ten were sent before the rest were listed"
    assert SqsQueue("url", client=sqs).send_all([]) == 0


def test_refused_entries_are_sent_again_and_counted_once():
    sqs = Sqs(refuse_first=3)
    assert SqsQueue("url", client=sqs).send_all(listed(sqs, 12)) == 12
    assert [len(b) for b in sqs.batches] == [10, 3, 2]


def test_entries_refused_five_times_fail_the_queuing():
    sqs = Sqs(refuse_first=1000)
    with pytest.raises(RuntimeError, match="refused 10 jobs after 5 attempts"):
        SqsQueue("url", client=sqs).send_all(listed(sqs, 10))
