"""Operator-set values: the SolusVM API token (Secrets Manager) and the token price and currency (SSM)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from cdk_nag import NagSuppressions
from constructs import Construct

from postpay.adapters.params import UNSET_SECRET

# What the secret holds until the operator sets it; the product refuses to use it (postpay.adapters.params).
SECRET_PLACEHOLDER = UNSET_SECRET


class OperatorSettings(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, stage: str, token_price: str, currency: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.solusvm_token = secretsmanager.Secret(
            self,
            "SolusVmApiToken",
            secret_name=f"postpay/{stage}/solusvm-api-token",
            description="SolusVM 2 API token of an admin user. Set it after the first deploy.",
            secret_string_value=SecretValue.unsafe_plain_text(SECRET_PLACEHOLDER),
            removal_policy=RemovalPolicy.RETAIN,
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
