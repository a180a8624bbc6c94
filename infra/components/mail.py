"""SES: the sender identity, a configuration set that suppresses bounced and complaining addresses,
and bounce and complaint events to an encrypted SNS topic.

An account has one identity per domain: the first stack on a domain creates it; any other (a second stage,
or a domain whose identity the provider already has) sets ``use_existing_identity`` and only refers to it.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from constructs import Construct


class Mail(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        sender_domain: str,
        use_existing_identity: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.identity: ses.EmailIdentity | None = None
        if use_existing_identity:
            self._identity_arn = Stack.of(self).format_arn(
                service="ses", resource="identity", resource_name=sender_domain
            )
        else:
            self.identity = ses.EmailIdentity(self, "Identity", identity=ses.Identity.domain(sender_domain))
            self._identity_arn = self.identity.email_identity_arn
        # The account-level suppression list, applied to this configuration set, is what stops the product
        # mailing an address that hard-bounced or complained: SES drops such sends before delivery.
        self.configuration_set = ses.ConfigurationSet(
            self,
            "ConfigurationSet",
            configuration_set_name=f"postpay-{stage}",
            suppression_reasons=ses.SuppressionReasons.BOUNCES_AND_COMPLAINTS,
            reputation_metrics=True,
            sending_enabled=True,
        )
        key = kms.Key(self, "EventsKey", enable_key_rotation=True, description="Post-Pay SES event topic")
        key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                principals=[iam.ServicePrincipal("ses.amazonaws.com")],
                resources=["*"],  # a key policy's resource is always the key itself
            )
        )
        self.events = sns.Topic(
            self,
            "BounceEvents",
            master_key=key,
            enforce_ssl=True,
            display_name="Post-Pay SES bounces and complaints",
        )
        self.configuration_set.add_event_destination(
            "BouncesAndComplaints",
            destination=ses.EventDestination.sns_topic(self.events),
            events=[ses.EmailSendingEvent.BOUNCE, ses.EmailSendingEvent.COMPLAINT],
        )

    @property
    def identity_arn(self) -> str:
        return self._identity_arn

    def grant_send(self, grantee: iam.IGrantable) -> None:
        """ses:SendEmail on exactly this identity and this configuration set."""
        stack = self.configuration_set.stack
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ses:SendEmail"],
                resources=[
                    self.identity_arn,
                    stack.format_arn(
                        service="ses",
                        resource="configuration-set",
                        resource_name=self.configuration_set.configuration_set_name,
                    ),
                ],
            )
        )
