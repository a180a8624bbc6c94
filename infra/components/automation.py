"""Automation: the run handler (daily schedule in the billing time zone, operator invokes), the invoicing
queue with its dead-letter queue, and the worker fed by the queue with bounded concurrency."""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.components.functions import PythonFunction

MAX_ATTEMPTS = 5  # deliveries of one job before it goes to the dead-letter queue
WORKER_TIMEOUT_SECONDS = 60
WORKER_CONCURRENCY = 5  # bounded, so SolusVM is not flooded (see README, Scaling)

# Table actions of each automation function (the run handler and the worker), and nothing more.
RUN_ACCESS: dict[str, list[str]] = {
    "accounts": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
    "tokens": ["dynamodb:Scan", "dynamodb:DeleteItem"],  # the daily sweep of expired sign-up attempts
    "invoices": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
    "invoice-runs": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    "run-outcomes": ["dynamodb:Query"],
}
WORKER_ACCESS: dict[str, list[str]] = {
    "accounts": ["dynamodb:GetItem"],  # the buyer's details, copied onto the invoice
    "invoices": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    "invoice-runs": ["dynamodb:UpdateItem"],
    "run-outcomes": ["dynamodb:GetItem", "dynamodb:PutItem"],
    "counters": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
}
# The indexes each function queries.
RUN_INDEXES = {"accounts": ["status-index", "suspended-index"], "invoices": ["number-index", "status-index"]}


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
            # Six times the worker's timeout (AWS's advice), and longer than the invoice email lease.
            visibility_timeout=Duration.seconds(6 * WORKER_TIMEOUT_SECONDS),
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_ATTEMPTS),
        )
        env = {
            **environment,
            "INVOICE_QUEUE_URL": self.queue.queue_url,
            "INVOICE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
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
            memory_mb=1024,
            reserved_concurrency=None,
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
        )
        for table, actions in RUN_ACCESS.items():
            self.run.grant_table(tables[table], actions, indexes=RUN_INDEXES.get(table))
        for table, actions in WORKER_ACCESS.items():
            self.worker.grant_table(tables[table], actions)
        self.queue.grant_send_messages(self.run.role)
        self.worker.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                max_concurrency=WORKER_CONCURRENCY,
            )
        )
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
        self.missed_run_alarm = cloudwatch.Alarm(
            self,
            "MissedDailyRun",
            metric=self.run.function.metric_invocations(period=Duration.days(1), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            alarm_description="The automation function did not run in the last day: a missed daily run.",
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
