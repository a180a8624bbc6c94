"""Automation: the run handler (daily schedule in the billing time zone, operator invokes), the invoicing
queue with its dead-letter queue, and the worker fed by the queue with bounded concurrency."""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagSuppressions
from constructs import Construct

from infra.components.functions import PythonFunction
from infra.scale import RUN_MEMORY_MB, SOLUSVM_MAX_CONCURRENCY, WORKER_CONCURRENCY, WORKER_MEMORY_MB
from postpay.limits import (
    DEAD_LETTER_MAX_RECEIVE_COUNT,
    INVOICE_MAX_ATTEMPTS,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    WORKER_BATCH_SIZE,
    WORKER_TIMEOUT_SECONDS,
)

EXPORT_DAYS = 7  # an export (a presigned link works an hour) is deleted by the bucket's lifecycle after this
EXPORT_PREFIX = "exports/"
EXPORT_ACTIONS = ["s3:PutObject", "s3:GetObject"]  # write the export; sign the link that reads it
# Every attempt of a job, each after a visibility timeout, and an hour of queue ahead of it.
JOBS_MAX_AGE_SECONDS = (DEAD_LETTER_MAX_RECEIVE_COUNT * QUEUE_VISIBILITY_TIMEOUT_SECONDS) + 3600

# Table actions of each automation function (the run handler and the worker), and nothing more.
RUN_ACCESS: dict[str, list[str]] = {
    # Query on the table: an account by client id, through its acceptances; Scan: that lookup's fallback
    "accounts": [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ],
    "tokens": ["dynamodb:Scan", "dynamodb:DeleteItem"],  # the daily sweep of expired sign-up attempts
    # PutItem: a credit note (voidInvoice); Scan: listInvoices with no client or status filter
    "invoices": [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ],
    "invoice-runs": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    "run-outcomes": ["dynamodb:Query"],
    "counters": ["dynamodb:GetItem", "dynamodb:UpdateItem"],  # the credit note series
    "acceptances": ["dynamodb:Query"],  # the terms an account accepted (account)
    # dunning: the charge's claim and outcome; PutItem: refund, on a void invoice, records its payments once
    "payments": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
}
WORKER_ACCESS: dict[str, list[str]] = {
    # the batch's buyers' details, copied onto their invoices; a suspension lifted once paid by card
    "accounts": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
    # Query: the automatic charge marks the invoice paid by number and lifts a suspension (overdue rule)
    "invoices": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
    "invoice-runs": ["dynamodb:UpdateItem"],
    "run-outcomes": ["dynamodb:GetItem", "dynamodb:PutItem"],
    # the invoice counter: read with the batch's buyers (BatchGetItem), advanced by its transaction
    "counters": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
    # the batch's cards on file (BatchGetItem), a card read again to charge it, the charge's claim
    "payments": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
}
# The indexes each function queries.
RUN_INDEXES = {
    "accounts": ["status-index", "suspended-index"],
    "invoices": ["number-index", "status-index", "client-index"],
}
WORKER_INDEXES = {"invoices": ["number-index", "status-index"]}


class Automation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        tables: dict[str, object],
        log_retention: logs.RetentionDays,
        billing_timezone: str,
        stage: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Jobs",
            # Time limits are chosen together in postpay.limits (checked by tests/unit/test_limits.py).
            visibility_timeout=Duration.seconds(QUEUE_VISIBILITY_TIMEOUT_SECONDS),
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=DEAD_LETTER_MAX_RECEIVE_COUNT
            ),
        )
        # A known name: the run handler invokes itself (asynchronously, to queue a run's jobs), and a
        # policy naming its own ARN by reference would be a dependency cycle.
        run_name = f"postpay-{stage}-automation"
        self.exports = self._exports_bucket()
        env = {
            **environment,
            "EXPORT_BUCKET": self.exports.bucket_name,
            "INVOICE_QUEUE_URL": self.queue.queue_url,
            "INVOICE_MAX_ATTEMPTS": str(INVOICE_MAX_ATTEMPTS),
            "AUTOMATION_FUNCTION_NAME": run_name,
            "SOLUSVM_MAX_CONCURRENCY": str(SOLUSVM_MAX_CONCURRENCY),
            "INVOICE_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        }
        self.run = PythonFunction(
            self,
            "Run",
            folder="automation",
            handler="app.handler",
            layer=layer,
            environment=env,
            log_retention=log_retention,
            timeout_seconds=900,
            memory_mb=RUN_MEMORY_MB,
            reserved_concurrency=None,
            function_name=run_name,
        )
        self.run.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[
                    Stack.of(self).format_arn(
                        service="lambda",
                        resource="function",
                        resource_name=run_name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.worker = PythonFunction(
            self,
            "Worker",
            folder="automation",
            handler="worker.handler",
            layer=layer,
            environment=env,
            log_retention=log_retention,
            timeout_seconds=WORKER_TIMEOUT_SECONDS,
            memory_mb=WORKER_MEMORY_MB,
        )
        for table, actions in RUN_ACCESS.items():
            self.run.grant_table(tables[table], actions, indexes=RUN_INDEXES.get(table))
        for table, actions in WORKER_ACCESS.items():
            self.worker.grant_table(tables[table], actions, indexes=WORKER_INDEXES.get(table))
        self.queue.grant_send_messages(self.run.role)
        self._grant_exports()
        self.worker.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=WORKER_BATCH_SIZE,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                max_concurrency=WORKER_CONCURRENCY,
            )
        )
        self.schedule_group = scheduler.CfnScheduleGroup(self, "Schedules", name=f"postpay-{stage}")
        self.schedule = self._daily_schedule(billing_timezone)
        self.dlq_alarm = cloudwatch.Alarm(
            self,
            "DeadLettersNotEmpty",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5)
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Invoicing jobs failed every attempt: read the run's failures, fix, redrive.",
        )
        # Only scheduled runs emit the gap since the previous one (operator invokes do not), and the first
        # one emits nothing: no alarm before the first day, and a skipped day shows as a gap of ~48 h.
        self.missed_run_alarm = cloudwatch.Alarm(
            self,
            "MissedDailyRun",
            metric=cloudwatch.Metric(
                namespace="PostPay",
                metric_name="HoursSinceLastDailyRun",
                dimensions_map={"service": "postpay"},
                statistic="Maximum",
                period=Duration.days(1),
            ),
            threshold=36,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="A scheduled daily run came 36 h or more after the previous one: a day was "
            "missed (upkeep and, on the 1st, invoicing). Check the schedule and ScheduleFailed.",
        )
        # The schedule could not invoke the function (after its retries): known at once, not a day later.
        self.schedule_failed_alarm = cloudwatch.Alarm(
            self,
            "ScheduleFailed",
            metric=cloudwatch.MathExpression(
                expression="FILL(errors, 0) + FILL(dropped, 0)",
                using_metrics={
                    name: cloudwatch.Metric(
                        namespace="AWS/Scheduler",
                        metric_name=metric,
                        dimensions_map={"ScheduleGroup": self.schedule_group.ref},
                        statistic="Sum",
                        period=Duration.hours(1),
                    )
                    for name, metric in (
                        ("errors", "TargetErrorCount"),
                        ("dropped", "InvocationDroppedCount"),
                    )
                },
                period=Duration.hours(1),
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="The daily schedule failed to invoke the automation function.",
        )
        # A run finishes when every job has an outcome. A job is either on the queue (this alarm, if it
        # waits longer than all its attempts take), in the dead-letter queue (recorded as failed, alarmed
        # above), or was never queued (the automation function failed: its Errors alarm).
        self.stuck_jobs_alarm = cloudwatch.Alarm(
            self,
            "RunNotFinishing",
            metric=self.queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(15), statistic="Maximum"
            ),
            threshold=JOBS_MAX_AGE_SECONDS,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="An invoicing job has waited longer than all its attempts should take: its run "
            "is not finishing (is the worker throttled or failing?).",
        )

    def _exports_bucket(self) -> s3.Bucket:
        """The operator's large exports: private, encrypted, TLS only, deleted after EXPORT_DAYS."""
        bucket = s3.Bucket(
            self,
            "Exports",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(EXPORT_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            bucket,
            [
                {
                    "id": "AwsSolutions-S1",
                    "reason": "Short-lived operator exports; who asked for each is in the audit log line.",
                }
            ],
        )
        return bucket

    def _grant_exports(self) -> None:
        self.run.role.add_to_policy(
            iam.PolicyStatement(
                actions=EXPORT_ACTIONS, resources=[self.exports.arn_for_objects(f"{EXPORT_PREFIX}*")]
            )
        )
        bucket_id = Stack.of(self).get_logical_id(self.exports.node.default_child)  # type: ignore[arg-type]
        NagSuppressions.add_resource_suppressions(
            self.run.role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "appliesTo": [f"Resource::<{bucket_id}.Arn>/{EXPORT_PREFIX}*"],
                    "reason": "Each export is a new object under exports/ whose name is made at export time.",
                }
            ],
            apply_to_children=True,
        )

    def _daily_schedule(self, timezone: str) -> scheduler.CfnSchedule:
        role = iam.Role(self, "SchedulerRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"))
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.run.function.function_arn])
        )
        return scheduler.CfnSchedule(
            self,
            "Daily",
            description="Post-Pay daily upkeep; on the 1st (billing time zone) also invoicing",
            group_name=self.schedule_group.ref,
            schedule_expression="cron(5 0 * * ? *)",
            schedule_expression_timezone=timezone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.run.function.function_arn,
                role_arn=role.role_arn,
                input=json.dumps({"schedule": "daily", "scheduledTime": "<aws.scheduler.scheduled-time>"}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3),
            ),
        )
