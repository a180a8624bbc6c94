"""Operations: a dashboard of what matters and alarms that page someone (SNS, optional email)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

NAMESPACE = "PostPay"


def product_metric(name: str, *, period_minutes: int = 60) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": "postpay"},
        statistic="Sum",
        period=Duration.minutes(period_minutes),
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        functions: dict[str, lambda_.IFunction],
        api: apigw.RestApi,
        configuration_set_name: str,
        currency: str,
        dead_letters: sqs.IQueue,
        alarm_email: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(self, "AlarmsKey", enable_key_rotation=True, description="Post-Pay alarm topic")
        key.grant_encrypt_decrypt(_cloudwatch_principal())
        self.topic = sns.Topic(
            self, "Alarms", master_key=key, enforce_ssl=True, display_name="Post-Pay alarms"
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []

        for name, function in functions.items():
            self._alarm(
                f"{name.title()}Errors",
                function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                threshold=1,
                description=f"The {name} function failed (an unhandled error or a timeout).",
            )
            self._alarm(
                f"{name.title()}Throttles",
                function.metric_throttles(period=Duration.minutes(5), statistic="Sum"),
                threshold=1,
                description=f"Lambda refused to run the {name} function (account or function concurrency).",
            )
        self._alarm(
            "ChargesFailed",
            product_metric("ChargesFailed"),
            threshold=5,
            description="Five or more card charges failed in an hour: read the payments logs and Stripe.",
        )
        self._alarm(
            "PaymentsOnVoidInvoices",
            product_metric("PaymentsOnVoidInvoices", period_minutes=5),
            threshold=1,
            description="A card payment succeeded on a void invoice and is being refunded automatically: "
            "check the refund in the payments logs ('card payment on a void invoice') and in Stripe.",
        )
        self._alarm(
            "WebhookRefused",
            product_metric("WebhookRefused", period_minutes=5),
            threshold=5,
            description="Stripe webhook requests refused (bad signature or stale): a wrong signing secret "
            "after a roll, or someone forging events.",
        )
        api_5xx = api.metric_server_error(period=Duration.minutes(5), statistic="Sum")
        self._alarm("Api5xx", api_5xx, threshold=5, description="The site answered 5xx errors.")
        bounce_rate = cloudwatch.Metric(
            namespace="AWS/SES",
            metric_name="Reputation.BounceRate",
            statistic="Maximum",
            period=Duration.hours(1),
        )
        self._alarm(
            "SesBounceRate",
            bounce_rate,
            threshold=0.05,
            description="SES bounce rate above 5%: SES reviews accounts at 5% and may pause sending at 10%.",
        )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"postpay-{stage}")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Sign-ups and enrollments",
                left=[
                    product_metric("SignUps"),
                    product_metric("Verifications"),
                    product_metric("Enrollments"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[f.metric_errors(period=Duration.minutes(5)) for f in functions.values()]
                + [api_5xx, product_metric("ProvisioningFailures", period_minutes=5)],
            ),
            cloudwatch.GraphWidget(
                title="Latency (p95)",
                left=[f.metric_duration(statistic="p95") for f in functions.values()],
            ),
            cloudwatch.GraphWidget(title="SES bounce rate", left=[bounce_rate]),
            cloudwatch.GraphWidget(
                title="Invoicing",
                left=[
                    product_metric("InvoicesIssued"),
                    product_metric("InvoiceFailures"),
                    product_metric("ChargesSucceeded"),
                    product_metric("ChargesFailed"),
                    product_metric("PaymentsOnVoidInvoices"),
                ],
                right=[product_metric(f"AmountBilled{currency}")],
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queue",
                left=[dead_letters.metric_approximate_number_of_messages_visible(period=Duration.minutes(5))],
            ),
            cloudwatch.GraphWidget(
                title="SolusVM latency (ms)",
                left=[
                    cloudwatch.Metric(
                        namespace=NAMESPACE,
                        metric_name="SolusVmLatency",
                        dimensions_map={"service": "postpay"},
                        statistic=stat,
                    )
                    for stat in ("p50", "p95", "Maximum")
                ],
            ),
        )

    def notify(self, *alarms: cloudwatch.Alarm) -> None:
        for alarm in alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            self.alarms.append(alarm)

    def _alarm(self, name: str, metric: cloudwatch.IMetric, *, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)


def _cloudwatch_principal():
    from aws_cdk import aws_iam as iam

    return iam.ServicePrincipal("cloudwatch.amazonaws.com")
