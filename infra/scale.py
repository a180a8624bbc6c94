"""The one place SolusVM's invoicing load is decided (README, Speed and scale), with no CDK import so the
benches can read it: worker environments at once (the queue's event source maximum concurrency) x usage
calls each makes at once = the panel's budget, which every worker checks at cold start
(SOLUSVM_MAX_CONCURRENCY, INVOICE_WORKER_CONCURRENCY)."""

WORKER_CONCURRENCY = 20
USAGE_PARALLELISM = 5
SOLUSVM_MAX_CONCURRENCY = WORKER_CONCURRENCY * USAGE_PARALLELISM
