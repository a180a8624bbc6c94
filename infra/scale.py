"""The one place SolusVM's invoicing load is decided (README, Speed and scale), with no CDK import so the
benches can read it: worker environments at once (the queue's event source maximum concurrency) x usage
calls each makes at once = the panel's budget, which every worker checks at cold start
(SOLUSVM_MAX_CONCURRENCY, INVOICE_WORKER_CONCURRENCY)."""

WORKER_CONCURRENCY = 20
USAGE_PARALLELISM = 5
SOLUSVM_MAX_CONCURRENCY = WORKER_CONCURRENCY * USAGE_PARALLELISM
# Lambda gives CPU in proportion to memory (one vCPU at 1,769 MB). The run handler lists the accounts and
# queues their jobs; each worker environment renders its invoices' PDFs (most of its CPU, README, Speed and
# scale), so its memory sets how many accounts a second twenty of them invoice.
RUN_MEMORY_MB = 1024
WORKER_MEMORY_MB = 512
