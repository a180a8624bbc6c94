"""The benches' model of AWS: round trips per call kind, and the parallel groups the floor replays."""

from __future__ import annotations

import pytest

from bench.model import DEFAULT_LATENCY_MS, Recorded, RequestModel, parallel_groups, parse_latency


def request(started: float, ended: float, kind: str = "solusvm") -> Recorded:
    return Recorded(started, ended, kind, 1, "GET", "/", None, {})


def test_latency_defaults_are_the_issues_and_each_kind_can_be_overridden():
    assert {k: DEFAULT_LATENCY_MS[k] for k in ("dynamodb", "transaction", "ses", "sqs", "solusvm")} == {
        "dynamodb": 8.0,
        "transaction": 15.0,
        "ses": 40.0,
        "sqs": 10.0,
        "solusvm": 80.0,
    }
    assert parse_latency("ses=60, solusvm=120") == {**DEFAULT_LATENCY_MS, "ses": 60.0, "solusvm": 120.0}
    assert set(parse_latency("0").values()) == {0.0}
    with pytest.raises(ValueError, match="unknown call kind 'lambda'"):
        parse_latency("lambda=5")
    with pytest.raises(ValueError, match="dynamodb='fast': a round trip in milliseconds"):
        parse_latency("dynamodb=fast")
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_latency("ses=-1")


def test_requests_that_overlapped_are_replayed_together_and_the_rest_in_order():
    receive = request(0.0, 0.01, "sqs")
    usages = [request(0.011, 0.09), request(0.012, 0.092), request(0.013, 0.091)]
    transaction = request(0.093, 0.11, "transaction")
    assert parallel_groups([transaction, *usages, receive]) == [[receive], usages, [transaction]]


def test_the_benchs_cheap_undo_copy_still_rolls_a_cancelled_transaction_back(monkeypatch):
    import boto3
    import moto.dynamodb.models as models

    import bench.moto
    from moto import mock_aws

    monkeypatch.setattr(models, "copy", type("Copy", (), {"deepcopy": staticmethod(bench.moto.undo_copy)}))
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="t", Item={"k": {"S": "a"}, "v": {"N": "1"}})
        add = {
            "TableName": "t",
            "Key": {"k": {"S": "a"}},
            "UpdateExpression": "SET v = v + :n",
            "ExpressionAttributeValues": {":n": {"N": "5"}},
        }
        # a transaction that updates one item, puts another, then fails a condition: nothing stays
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(
                TransactItems=[
                    {"Update": add},
                    {"Put": {"TableName": "t", "Item": {"k": {"S": "b"}}}},
                    {
                        "Put": {
                            "TableName": "t",
                            "Item": {"k": {"S": "c"}},
                            "ConditionExpression": "attribute_exists(k)",
                        }
                    },
                ]
            )
        assert ddb.scan(TableName="t")["Items"] == [{"k": {"S": "a"}, "v": {"N": "1"}}]
        ddb.transact_write_items(TransactItems=[{"Update": add}])
        assert ddb.scan(TableName="t")["Items"] == [{"k": {"S": "a"}, "v": {"N": "6"}}]


def test_requests_are_also_counted_by_operation():
    operation = RequestModel.operation
    assert (
        operation("dynamodb", "/", {"X-Amz-Target": b"DynamoDB_20120810.BatchGetItem"})
        == "dynamodb BatchGetItem"
    )
    assert operation("sqs", "/", {"X-Amz-Target": "AmazonSQS.ReceiveMessage"}) == "sqs ReceiveMessage"
    assert operation("ses", "/v2/email/outbound-emails", {}) == "ses outbound-emails"
    assert operation("solusvm", "/api/v1/users/7/usage?date_from=2022-10-01", {}) == "solusvm usage"


def test_batches_are_scheduled_on_the_free_worker_once_their_messages_are_queued():
    from bench.model import schedule

    assert schedule([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], workers=2) == 2.0
    assert schedule([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], workers=3) == 1.0
    # the third batch's messages are queued only at 5 s; the run handler itself ends at 6 s
    assert schedule([1.0, 1.0, 1.0], [0.0, 0.0, 5.0], workers=3) == 6.0
    assert schedule([1.0], [0.0], workers=1, not_before=6.5) == 6.5


def test_the_virtual_clock_counts_round_trips_and_scaled_cpu_and_joins_thread_pools():
    import time
    from concurrent.futures import ThreadPoolExecutor

    from bench.model import VirtualClock, cpu_scale, install_threads

    assert cpu_scale(1769) == 1.0 and cpu_scale(3538) == 1.0 and round(cpu_scale(512), 3) == 3.455
    clock = VirtualClock(scale=2.0)
    undo = install_threads(clock)
    try:
        start_model, start_floor = clock.now()
        clock.wait(0.015)  # a transaction's round trip
        clock.wait(0.5, io=False)  # the product's own pause: not in the floor

        def call(_: int) -> None:
            clock.wait(0.08)  # a usage call

        with ThreadPoolExecutor(2) as pool:  # four calls, two at a time: two rounds
            list(pool.map(call, range(4)))
        spin = time.thread_time()
        while time.thread_time() - spin < 0.05:  # CPU: counted twice over (scale 2) in the model only
            pass
        model, floor = clock.now()
    finally:
        undo()
    assert floor - start_floor == pytest.approx(0.015 + 0.16, abs=1e-6)
    assert model - start_model == pytest.approx(0.015 + 0.5 + 0.16 + 0.1, abs=0.03)
    assert ThreadPoolExecutor.submit.__name__ == "submit"  # undone


def test_cpu_outside_the_function_is_not_charged_but_its_round_trips_are():
    import time

    from bench.model import VirtualClock

    def spin(seconds: float) -> None:
        start = time.thread_time()
        while time.thread_time() - start < seconds:
            pass

    clock = VirtualClock()
    start_model, start_floor = clock.now()
    with clock.charging(False):  # the event source mapping: receives, then invokes the function, then deletes
        spin(0.05)
        clock.wait(0.01)  # ReceiveMessage's round trip: counted
        with clock.charging(True):
            spin(0.04)  # the function's CPU: counted
        spin(0.05)
    model, floor = clock.now()
    assert floor - start_floor == pytest.approx(0.01, abs=1e-6)
    assert model - start_model == pytest.approx(0.05, abs=0.02)
