"""Operator-set values: the SolusVM API token and Stripe's secrets (Secrets Manager); the token price and
currency, and the invoice profile (seller, tax, payment instructions) under one path (SSM)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from cdk_nag import NagSuppressions
from constructs import Construct

from postpay.adapters.params import UNSET_SECRET

# What the secret holds until the operator sets it; the product refuses to use it (postpay.adapters.params).
SECRET_PLACEHOLDER = UNSET_SECRET


class OperatorSettings(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        token_price: str,
        currency: str,
        invoice_profile: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.invoice_path = f"/postpay/{stage}/invoice/"
        # No fixed name (CloudFormation names it; the SolusVmTokenSecret output says which): a first deploy
        # that failed and rolled back leaves no name behind for the retry to collide with.
        self.solusvm_token = secretsmanager.Secret(
            self,
            "SolusVmApiToken",
            description=f"Post-Pay {stage}: the SolusVM 2 API token of an admin user (set after deploying)",
            secret_string_value=SecretValue.unsafe_plain_text(SECRET_PLACEHOLDER),
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        NagSuppressions.add_resource_suppressions(
            self.solusvm_token,
            [
                {
                    "id": "AwsSolutions-SMG4",
                    "reason": "The SolusVM API token is issued in the SolusVM admin panel; "
                    "it cannot be rotated by a Lambda. Operators rotate it by hand (README, Operating).",
                }
            ],
        )
        self.stripe_secret_key = self._stripe_secret("StripeSecretKey", stage, "secret key (sk_...)")
        self.stripe_webhook_secret = self._stripe_secret(
            "StripeWebhookSecret", stage, "webhook signing secret (whsec_...)"
        )
        self.token_price = ssm.StringParameter(
            self,
            "TokenPrice",
            parameter_name=f"/postpay/{stage}/token-price",
            string_value=token_price,
            description="Price of one SolusVM token, in the currency parameter's currency (a decimal).",
        )
        self.currency = ssm.StringParameter(
            self,
            "Currency",
            parameter_name=f"/postpay/{stage}/currency",
            string_value=currency,
            description="ISO 4217 code of the invoice currency.",
        )
        # One parameter per set value (SSM refuses empty ones); the functions read the whole path at once.
        for name, value in sorted(invoice_profile.items()):
            ssm.StringParameter(
                self,
                "Invoice" + "".join(part.title() for part in name.replace("-", "/").split("/")),
                parameter_name=self.invoice_path + name,
                string_value=value,
                tier=ssm.ParameterTier.ADVANCED if len(value.encode("utf-8")) > 4096 else None,
                description=f"Invoice profile: {name} (README, Configuration)",
            )

    def grant_invoice_profile(self, role: iam.IRole) -> None:
        """ssm:GetParametersByPath on the invoice path, and nothing else."""
        stack = Stack.of(self)
        base = f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{self.invoice_path}"
        # GetParametersByPath is authorized on the path itself (with or without its closing slash), not
        # per parameter, so no wildcard is needed.
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ssm:GetParametersByPath"], resources=[base.rstrip("/"), base])
        )

    def _stripe_secret(self, construct_id: str, stage: str, what: str) -> secretsmanager.Secret:
        # No fixed name, like the SolusVM token's (its output says which): a retried first deploy never
        # collides with a secret a rolled-back one left behind.
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=f"Post-Pay {stage}: Stripe {what}. Set it, then the stripePublishableKey context, "
            "to take cards.",
            secret_string_value=SecretValue.unsafe_plain_text(SECRET_PLACEHOLDER),
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        NagSuppressions.add_resource_suppressions(
            secret,
            [
                {
                    "id": "AwsSolutions-SMG4",
                    "reason": "Stripe's keys are issued and rolled in the Stripe dashboard; "
                    "a Lambda cannot rotate them. Operators roll them by hand (README, Operating).",
                }
            ],
        )
        return secret

    def grant_stripe(self, role: iam.IRole) -> None:
        self.stripe_secret_key.grant_read(role)
        self.stripe_webhook_secret.grant_read(role)
