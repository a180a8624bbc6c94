"""The one place SolusVM's invoicing load is decided (README, Speed and scale), with no CDK import so the
benches can read it: worker environments at once (the queue's event source maximum concurrency) x usage
calls each makes at once = the panel's budget, which every worker checks at cold start
(SOLUSVM_MAX_CONCURRENCY, INVOICE_WORKER_CONCURRENCY)."""

WORKER_CONCURRENCY = 20
USAGE_PARALLELISM = 5
SOLUSVM_MAX_CONCURRENCY = WORKER_CONCURRENCY * USAGE_PARALLELISM
# Lambda gives CPU in proportion to memory (one full vCPU at 1,769 MB, the most one Python thread uses). The
# run handler lists the accounts and queues their jobs once a month, at the pace the twenty workers start: at
# 1,024 MB (0.58 vCPU) its CPU per account took 1.7 times as long, and the first workers waited for their
# first jobs; the few seconds a day it runs cost the same either way. A worker's CPU (its invoices' PDFs and
# emails) bounds how many accounts a second twenty of them invoice: at 512 MB (0.29 vCPU) the CPU alone takes
# ~3.5 times as long; at one vCPU it overlaps the batch's network waits, for about the same GB-seconds per
# account (the CPU's share costs the same at any size). README, Speed and scale.
RUN_MEMORY_MB = 1769
WORKER_MEMORY_MB = 1769
