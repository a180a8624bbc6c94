"""The invoicing time limits hold together (postpay.limits): what the stack deploys and the worker obeys."""

from __future__ import annotations

from postpay import limits
from postpay.billing.collection import CHARGE_LEASE
from postpay.billing.invoicing import EMAIL_LEASE
from postpay.billing.refunds import REFUND_LEASE


def test_a_worst_case_job_is_every_solusvm_and_stripe_try_timing_out_plus_aws():
    tries = limits.SOLUSVM_RETRIES + 1
    solusvm = tries * (limits.SOLUSVM_CONNECT_TIMEOUT_SECONDS + limits.SOLUSVM_READ_TIMEOUT_SECONDS)
    backoff = limits.SOLUSVM_RETRIES * limits.SOLUSVM_BACKOFF_MAX_SECONDS
    stripe_call = (limits.STRIPE_NETWORK_RETRIES + 1) * limits.STRIPE_TIMEOUT_SECONDS + (
        limits.STRIPE_NETWORK_RETRIES * limits.STRIPE_BACKOFF_MAX_SECONDS
    )
    charge = limits.STRIPE_CALLS_PER_CHARGE * stripe_call
    assert charge == limits.STRIPE_CHARGE_WORST_CASE_SECONDS
    assert solusvm + backoff + limits.AWS_SECONDS_PER_JOB + charge == limits.JOB_WORST_CASE_SECONDS
    assert limits.START_JOB_MIN_REMAINING_MS > limits.JOB_WORST_CASE_SECONDS * 1000


def test_a_charge_holds_its_claim_longer_than_its_gateway_calls_can_take():
    assert CHARGE_LEASE.total_seconds() > limits.STRIPE_CHARGE_WORST_CASE_SECONDS, "never two live tries"
    assert CHARGE_LEASE.total_seconds() < limits.QUEUE_VISIBILITY_TIMEOUT_SECONDS, "a redelivery may retry"


def test_a_refund_holds_its_claim_longer_than_its_gateway_calls_can_take():
    # a refund's calls are a charge's: the look-up of an earlier try's refund, then the one making it
    assert REFUND_LEASE.total_seconds() > limits.STRIPE_CHARGE_WORST_CASE_SECONDS, "never two live tries"


def test_a_batch_of_worst_case_jobs_fits_in_the_workers_timeout():
    batch = limits.WORKER_BATCH_SIZE * limits.START_JOB_MIN_REMAINING_MS / 1000
    assert batch <= limits.WORKER_TIMEOUT_SECONDS, "every job of a full batch can start in time"
    assert limits.WORKER_TIMEOUT_SECONDS <= 900, "Lambda's maximum"


def test_the_queue_hides_a_job_longer_than_the_worker_runs_and_the_email_lease_lasts():
    assert limits.QUEUE_VISIBILITY_TIMEOUT_SECONDS >= 6 * limits.WORKER_TIMEOUT_SECONDS  # AWS's advice
    assert EMAIL_LEASE.total_seconds() < limits.QUEUE_VISIBILITY_TIMEOUT_SECONDS
    assert EMAIL_LEASE.total_seconds() > limits.JOB_WORST_CASE_SECONDS, "a live attempt never loses its lease"
    assert EMAIL_LEASE.total_seconds() > limits.WORKER_TIMEOUT_SECONDS, "nor a live batch"


def test_the_dead_letter_queue_takes_a_job_one_delivery_after_its_last_attempt():
    assert limits.DEAD_LETTER_MAX_RECEIVE_COUNT == limits.INVOICE_MAX_ATTEMPTS + 1


def test_a_batch_prepared_together_needs_as_long_as_one_job_per_round_of_parallel_usage_calls():
    one = limits.batch_worst_case_ms(1, parallelism=4)
    assert one == limits.START_JOB_MIN_REMAINING_MS, "a batch of one is one job"
    sequential = limits.batch_worst_case_ms(limits.WORKER_BATCH_SIZE, parallelism=1)
    parallel = limits.batch_worst_case_ms(limits.WORKER_BATCH_SIZE, parallelism=limits.WORKER_BATCH_SIZE)
    assert parallel < sequential <= limits.WORKER_TIMEOUT_SECONDS * 1000
    assert EMAIL_LEASE.total_seconds() * 1000 > sequential, "a batch's emails are sent within their lease"


def test_a_batch_starts_only_the_jobs_that_have_time_left():
    full = limits.batch_worst_case_ms(5, parallelism=2)
    assert limits.jobs_in_time(full, 5, parallelism=2) == 5
    assert limits.jobs_in_time(full - 1, 5, parallelism=2) == 4
    assert limits.jobs_in_time(limits.START_JOB_MIN_REMAINING_MS - 1, 5, parallelism=2) == 0
    assert limits.jobs_in_time(10**9, 0, parallelism=2) == 0


def test_a_batch_counts_every_jobs_card_charge_made_after_its_invoices_are_issued():
    # a second job in the same round of usage calls adds its finish: AWS allowance and its card charge
    one, two = (limits.batch_worst_case_ms(jobs, parallelism=2) for jobs in (1, 2))
    assert two - one >= (limits.AWS_SECONDS_PER_JOB + limits.STRIPE_CHARGE_WORST_CASE_SECONDS) * 1000 - 1
    assert limits.JOB_WORST_CASE_SECONDS == limits.SOLUSVM_WORST_CASE_SECONDS + limits.FINISH_SECONDS_PER_JOB
