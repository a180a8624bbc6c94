"""Time limits of invoicing, chosen together and stated once.

The stack deploys them (infra/components/automation.py), the worker and the SolusVM adapter obey them,
and tests/unit/test_limits.py checks the arithmetic that ties them:

- one job's worst case: every SolusVM try times out (connect, then read), with the retries' back-off,
  plus an allowance for the DynamoDB transaction, the SES send and the "sent" mark, plus the automatic card
  charge (Stripe configured): both of its gateway calls timing out on every try;
- a whole batch of worst-case jobs fits in the worker's timeout, and the worker still checks the time left
  and hands back what it cannot finish (so a slower world than this arithmetic never kills a job half-way):
  the batch is prepared together (usage in parallel, one transaction) only as far as ``jobs_in_time``
  allows, and a job left out starts alone only with START_JOB_MIN_REMAINING_MS left;
- the queue hides a message for six times the worker's timeout (AWS's advice for Lambda event sources),
  which is longer than the invoice email lease;
- a job gets ``INVOICE_MAX_ATTEMPTS`` tries; one more delivery only records a last try that died (timed out
  or stopped) as *failed*, then the message goes to the dead-letter queue.
"""

from __future__ import annotations

import math

SOLUSVM_CONNECT_TIMEOUT_SECONDS = 3.05
SOLUSVM_READ_TIMEOUT_SECONDS = 10.0  # the most SOLUSVM_TIMEOUT_SECONDS may be
SOLUSVM_RETRIES = 2  # after the first try: connection failures and 5xx (a read timeout or a sent POST never)
SOLUSVM_BACKOFF_FACTOR = 0.3
SOLUSVM_BACKOFF_MAX_SECONDS = 2.0
AWS_SECONDS_PER_JOB = 10.0  # DynamoDB transaction, SES send, mark sent: ~100 ms each, with ample margin

# The Stripe SDK's client (postpay.adapters.stripe_gateway): a timeout per request, network retries (safe:
# every creating request carries an idempotency key), and the SDK's own cap on the delay between them.
STRIPE_TIMEOUT_SECONDS = 10.0
STRIPE_NETWORK_RETRIES = 1
STRIPE_BACKOFF_MAX_SECONDS = 5.0  # stripe.HTTPClient.MAX_DELAY
STRIPE_CALLS_PER_CHARGE = 2  # the look-up of an earlier try's PaymentIntent, then the one creating it
STRIPE_CHARGE_WORST_CASE_SECONDS = STRIPE_CALLS_PER_CHARGE * (
    (STRIPE_NETWORK_RETRIES + 1) * STRIPE_TIMEOUT_SECONDS
    + STRIPE_NETWORK_RETRIES * STRIPE_BACKOFF_MAX_SECONDS
)

SOLUSVM_WORST_CASE_SECONDS = (SOLUSVM_RETRIES + 1) * (
    SOLUSVM_CONNECT_TIMEOUT_SECONDS + SOLUSVM_READ_TIMEOUT_SECONDS
) + SOLUSVM_RETRIES * SOLUSVM_BACKOFF_MAX_SECONDS
# What one job adds after the usage calls: its share of the transaction, its email, and its card charge
# (made one job after another, once the batch's invoices are issued).
FINISH_SECONDS_PER_JOB = AWS_SECONDS_PER_JOB + STRIPE_CHARGE_WORST_CASE_SECONDS
JOB_WORST_CASE_SECONDS = SOLUSVM_WORST_CASE_SECONDS + FINISH_SECONDS_PER_JOB
START_MARGIN_MS = 2_000
# A job starts only with this much time left; otherwise it is handed back to the queue untouched.
START_JOB_MIN_REMAINING_MS = math.ceil(JOB_WORST_CASE_SECONDS * 1000) + START_MARGIN_MS


def batch_worst_case_ms(jobs: int, *, parallelism: int) -> int:
    """A batch prepared together: its usage calls in rounds of ``parallelism`` at once (each round as slow as
    one worst-case call), plus every job's finish (AWS allowance and card charge, one job after another).
    One job: START_JOB_MIN_REMAINING_MS."""
    rounds = -(-jobs // max(1, parallelism))
    return (
        math.ceil((rounds * SOLUSVM_WORST_CASE_SECONDS + jobs * FINISH_SECONDS_PER_JOB) * 1000)
        + START_MARGIN_MS
    )


def jobs_in_time(remaining_ms: int, jobs: int, *, parallelism: int) -> int:
    """How many of a batch's ``jobs`` may start together with ``remaining_ms`` left (0: none)."""
    while jobs > 0 and batch_worst_case_ms(jobs, parallelism=parallelism) > remaining_ms:
        jobs -= 1
    return jobs


# A worker's batch: as many jobs as can all start in Lambda's longest timeout even one after another, each
# with its worst case ahead (8 x 105 s = 841 s of 900). The larger the batch, the fewer transactions on the
# one invoice counter a run makes, and the less the workers contend for it (README, Speed and scale).
WORKER_BATCH_SIZE = 8
WORKER_TIMEOUT_SECONDS = 900
QUEUE_VISIBILITY_TIMEOUT_SECONDS = 6 * WORKER_TIMEOUT_SECONDS
INVOICE_MAX_ATTEMPTS = 5
# SQS moves a message to the dead-letter queue when it is received once more than this.
DEAD_LETTER_MAX_RECEIVE_COUNT = INVOICE_MAX_ATTEMPTS + 1
# An export's presigned link works for an hour; the bucket's lifecycle removes the object later.
EXPORT_LINK_SECONDS = 3600
