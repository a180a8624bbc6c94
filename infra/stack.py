"""The Post-Pay stack: composes one construct per concern and wires least-privilege grants."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.api import Site
from infra.components.automation import Automation
from infra.components.data import Data
from infra.components.functions import PythonFunction, SharedLayer
from infra.components.mail import Mail
from infra.components.monitoring import Monitoring
from infra.components.settings import OperatorSettings
from infra.config import StackConfig

# What each page function may do to each table, and nothing more.
TABLE_ACCESS: dict[str, dict[str, list[str]]] = {
    "signup": {
        "accounts": ["dynamodb:GetItem"],
        "tokens": ["dynamodb:PutItem"],  # a sign-up attempt: never an account, never an overwrite
        "sessions": ["dynamodb:GetItem"],  # which navigation to show
        "rate-limits": ["dynamodb:UpdateItem"],
    },
    "verify": {
        "accounts": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        "tokens": ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
        "acceptances": ["dynamodb:PutItem"],
        "sessions": [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
        ],
        "rate-limits": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "counters": ["dynamodb:UpdateItem"],
    },
    "sso": {
        "accounts": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "sessions": [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
        ],
        "tokens": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],  # reset links
        "rate-limits": ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
        # Pay now marks the invoice paid (by number) and lifts a suspension (the overdue rule's query)
        "invoices": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        # the card on file, Pay now's charge claim; PutItem: a payment the client finished on a void invoice
        "payments": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    },
    # Stripe's webhook: events stored once, the invoice marked paid, a suspension lifted, a failure emailed
    "payments": {
        "payments": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        "invoices": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        "accounts": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
    },
}
# The indexes each page function queries.
PAGE_INDEXES: dict[str, dict[str, list[str]]] = {
    "verify": {"sessions": ["email-index"]},
    "sso": {"sessions": ["email-index"], "invoices": ["client-index", "number-index", "status-index"]},
    "payments": {"invoices": ["number-index", "status-index"]},
}
# Which functions read the SolusVM API token, the price parameters, and send email.
USES_SOLUSVM = {"verify", "sso", "payments"}
READS_PRICES = {"signup", "sso"}
SENDS_MAIL = {"signup", "verify", "sso", "payments"}
# Which functions read the Stripe secret key and webhook signing secret (sso: the card pages and Pay now).
USES_STRIPE = {"payments", "sso"}


class PostPayStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        retention = _retention(config.log_retention_days)
        data = Data(self, "Data", stage=config.stage)
        mail = Mail(
            self,
            "Mail",
            stage=config.stage,
            sender_domain=config.sender_domain,
            use_existing_identity=config.use_existing_ses_identity,
        )
        operator = OperatorSettings(
            self,
            "OperatorSettings",
            stage=config.stage,
            token_price=config.token_price,
            currency=config.currency,
            invoice_profile=config.invoice_profile(),
        )
        layer = SharedLayer(self, "Shared").layer
        # The API first (without routes): its address goes into every function's environment.
        site = Site(
            self,
            "Site",
            stage=config.stage,
            rate_limit=config.api_rate_limit,
            burst_limit=config.api_burst_limit,
            waf_rate_limit=config.waf_rate_limit,
            log_retention=retention,
            domain_name=config.domain_name,
            certificate_arn=config.certificate_arn,
            hosted_zone_id=config.hosted_zone_id,
            hosted_zone_name=config.hosted_zone_name,
        )
        environment = _environment(
            config,
            public_base_url=site.public_url,
            table_prefix=data.table_prefix,
            secret=operator.solusvm_token.secret_arn,
            price_parameter=operator.token_price.parameter_name,
            currency_parameter=operator.currency.parameter_name,
            configuration_set=mail.configuration_set.configuration_set_name,
            invoice_parameters_path=operator.invoice_path,
            stripe_secrets=(operator.stripe_secret_key.secret_arn, operator.stripe_webhook_secret.secret_arn),
        )
        self.functions: dict[str, PythonFunction] = {}
        for name, access in TABLE_ACCESS.items():
            function = PythonFunction(
                self,
                f"{name.title()}Function",
                folder=name,
                layer=layer,
                environment=environment,
                log_retention=retention,
            )
            for table, actions in access.items():
                function.grant_table(
                    data.tables[table], actions, indexes=PAGE_INDEXES.get(name, {}).get(table)
                )
            if name in USES_SOLUSVM:
                operator.solusvm_token.grant_read(function.role)
            if name in READS_PRICES:
                operator.token_price.grant_read(function.role)
                operator.currency.grant_read(function.role)
            if name in SENDS_MAIL:
                mail.grant_send(function.role)
            operator.grant_invoice_profile(function.role)  # the seller in every page's footer
            if name in USES_STRIPE:
                operator.grant_stripe(function.role)
            self.functions[name] = function

        site.route({n: f.function for n, f in self.functions.items()})
        self.automation = Automation(
            self,
            "Automation",
            layer=layer,
            environment=environment,
            tables=dict(data.tables),
            log_retention=retention,
            billing_timezone=config.billing_timezone,
            stage=config.stage,
        )
        for function in (self.automation.run, self.automation.worker):
            operator.solusvm_token.grant_read(function.role)
            operator.token_price.grant_read(function.role)
            operator.currency.grant_read(function.role)
            operator.grant_invoice_profile(function.role)
            mail.grant_send(function.role)
        operator.grant_stripe(self.automation.worker.role)
        operator.grant_stripe(self.automation.run.role)  # dunning retries
        monitoring = Monitoring(
            self,
            "Monitoring",
            stage=config.stage,
            functions={
                **{n: f.function for n, f in self.functions.items()},
                "automation": self.automation.run.function,
                "worker": self.automation.worker.function,
            },
            api=site.api,
            configuration_set_name=mail.configuration_set.configuration_set_name,
            alarm_email=config.alarm_email,
            currency=config.currency,
            dead_letters=self.automation.dead_letters,
        )
        monitoring.notify(
            self.automation.dlq_alarm,
            self.automation.missed_run_alarm,
            self.automation.schedule_failed_alarm,
            self.automation.stuck_jobs_alarm,
        )
        CfnOutput(
            self,
            "AutomationFunctionName",
            value=self.automation.run.function.function_name,
            description="The automation function: invoke it with an operator payload (README, Operating)",
        )
        CfnOutput(
            self,
            "SiteUrl",
            value=site.public_url,
            description="The site's address: open it and sign up (every link in pages and emails uses it)",
        )
        CfnOutput(
            self,
            "StripeSecretKeySecret",
            value=operator.stripe_secret_key.secret_arn,
            description="Put Stripe's secret key here to take cards (README, Deploying: card payments)",
        )
        CfnOutput(
            self,
            "StripeWebhookSecretSecret",
            value=operator.stripe_webhook_secret.secret_arn,
            description="Put the Stripe webhook's signing secret here (README, Deploying: card payments)",
        )
        CfnOutput(
            self,
            "SolusVmTokenSecret",
            value=operator.solusvm_token.secret_arn,
            description="Put the SolusVM API token here (aws secretsmanager put-secret-value --secret-id …)",
        )


def _environment(
    config: StackConfig,
    *,
    public_base_url: str,
    table_prefix: str,
    secret: str,
    price_parameter: str,
    currency_parameter: str,
    configuration_set: str,
    invoice_parameters_path: str,
    stripe_secrets: tuple[str, str],
) -> dict[str, str]:
    env = {
        "PUBLIC_BASE_URL": public_base_url,
        "TABLE_PREFIX": table_prefix,
        "MAIL_FROM": config.sender_address,
        "SES_CONFIGURATION_SET": configuration_set,
        "SOLUSVM_URL": config.solusvm_url,
        "SOLUSVM_TOKEN_SECRET": secret,
        "SSO_URL_TEMPLATE": config.sso_url_template,
        "TOKEN_PRICE_PARAMETER": price_parameter,
        "CURRENCY_PARAMETER": currency_parameter,
        "INVOICE_PARAMETERS_PATH": invoice_parameters_path,
        "TOS_URL": config.tos_url,
        "TOS_VERSION": config.tos_version,
        "BILLING_TIMEZONE": config.billing_timezone,
        "DUE_DAYS": str(config.due_days),
        "GRACE_DAYS": str(config.grace_days),
        "INVOICE_NUMBER_FORMAT": config.invoice_number_format,
    }
    if config.stripe_publishable_key:  # card payments on: the operator has put both Stripe secrets
        env["STRIPE_SECRET_KEY_SECRET"], env["STRIPE_WEBHOOK_SECRET_SECRET"] = stripe_secrets
        env["STRIPE_PUBLISHABLE_KEY"] = config.stripe_publishable_key
        env["DUNNING_DAYS"] = config.dunning_days
        if config.carry_below_minimum:
            env["CARRY_BELOW_MINIMUM"] = "true"
    if config.solusvm_limit_group_id:
        env["SOLUSVM_LIMIT_GROUP_ID"] = config.solusvm_limit_group_id
    if config.postpay_terms_url:
        env["POSTPAY_TERMS_URL"] = config.postpay_terms_url
        env["POSTPAY_TERMS_VERSION"] = config.postpay_terms_version
    return env


_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def _retention(days: int) -> logs.RetentionDays:
    if days not in _RETENTION:
        raise ValueError(f"context logRetentionDays must be one of {sorted(_RETENTION)}, got {days}")
    return _RETENTION[days]
