"""The site: API Gateway REST API with proxy routes to the page functions, access logs, stage throttling,
and a WAF web ACL (per-IP rate rule on the sensitive routes, AWS managed common rules).

The site's public address is known before any function exists, so the functions can be told it without a
dependency cycle: ``https://<domainName>/`` with a custom domain (mapped at its root), else the API's own
stage URL built from the API's id and the fixed stage name (never from the stage resource, which depends
on the deployment, which depends on the functions)."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from aws_cdk import aws_wafv2 as wafv2
from cdk_nag import NagSuppressions
from constructs import Construct

from postpay.routes import FALLBACK_FUNCTION, ROUTES

STAGE_NAME = "live"
RATE_LIMITED_PATHS = ["/signup", "/verify", "/login", "/forgot", "/reset", "/account/password"]


class Site(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        rate_limit: int,
        burst_limit: int,
        waf_rate_limit: int,
        log_retention: logs.RetentionDays,
        domain_name: str = "",
        certificate_arn: str = "",
        hosted_zone_id: str = "",
        hosted_zone_name: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain_name = domain_name
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"postpay-{stage}",
            description="Post-Pay billing portal",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The invoice PDF is returned base64-encoded by the function; API Gateway turns it back into
            # bytes only for binary media types, matched against the browser's Accept header (text/html
            # first for a link), hence */*. Text answers are not base64-encoded and pass unchanged.
            binary_media_types=["*/*"],
            # With a custom domain the site is at its root, and its links carry no stage: the API's own
            # URL would serve pages whose every link fails, so it is switched off (one address, one origin).
            disable_execute_api_endpoint=bool(domain_name),
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
            ),
        )
        # API Gateway would create the execution log group itself, without a retention: create it first.
        execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=Fn.join(
                "", ["API-Gateway-Execution-Logs_", self.api.rest_api_id, f"/{STAGE_NAME}"]
            ),
            retention=log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.api.deployment_stage.node.add_dependency(execution_logs)
        if domain_name:
            # Mapped at the domain's root: the site is https://<domain>/ and its paths carry no stage.
            domain = self.api.add_domain_name(
                "Domain",
                domain_name=domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn),
                security_policy=apigw.SecurityPolicy.TLS_1_2,
                endpoint_type=apigw.EndpointType.REGIONAL,
            )
            if hosted_zone_id:
                zone = route53.HostedZone.from_hosted_zone_attributes(
                    self, "Zone", hosted_zone_id=hosted_zone_id, zone_name=hosted_zone_name.rstrip(".")
                )
                route53.ARecord(
                    self,
                    "Alias",
                    zone=zone,
                    record_name=domain_name,
                    target=route53.RecordTarget.from_alias(targets.ApiGatewayDomain(domain)),
                )
            else:
                CfnOutput(
                    scope,
                    "DomainTarget",
                    value=domain.domain_name_alias_domain_name,
                    description=f"Point {domain_name} here (an alias or CNAME record in your DNS)",
                )
        self.web_acl = self._web_acl(stage, waf_rate_limit)
        wafv2.CfnWebACLAssociation(
            self,
            "WafAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )

    @property
    def public_url(self) -> str:
        """The address people use, ending in "/": what the functions build every link from."""
        if self.domain_name:
            return f"https://{self.domain_name}/"
        return Fn.join(
            "",
            [
                "https://",
                self.api.rest_api_id,
                ".execute-api.",
                Aws.REGION,
                ".",
                Aws.URL_SUFFIX,
                f"/{STAGE_NAME}/",
            ],
        )

    def route(self, functions: dict[str, lambda_.IFunction]) -> None:
        """Every route of ``postpay.routes`` to its function; anything else to the fallback's 404 page."""
        integrations = {name: apigw.LambdaIntegration(fn, proxy=True) for name, fn in functions.items()}
        # Every method is ANY: a handler answers a wrong method with a 405 page, never the gateway.
        for path, route in ROUTES.items():
            self.api.root.resource_for_path(path).add_method("ANY", integrations[route.function])
        self.api.root.add_proxy(default_integration=integrations[FALLBACK_FUNCTION], any_method=True)
        # After the methods exist: suppressions reach only the children present when they are added.
        NagSuppressions.add_resource_suppressions(
            self.api,
            [
                {
                    "id": "AwsSolutions-APIG2",
                    "reason": "Requests are form posts from browsers; every handler "
                    "validates its input strictly and answers bad input with a 4xx page.",
                },
                {
                    "id": "AwsSolutions-APIG4",
                    "reason": "A public website: pages authenticate with the product's "
                    "own session cookie, and anonymous pages (landing, sign-up) must stay open.",
                },
                {"id": "AwsSolutions-COG4", "reason": "Users are the product's own accounts, not Cognito's."},
                {
                    "id": "AwsSolutions-IAM4",
                    "appliesTo": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                    ],
                    "reason": "API Gateway's account CloudWatch role uses AWS's documented managed policy.",
                },
            ],
            apply_to_children=True,
        )

    def _web_acl(self, stage: str, waf_rate_limit: int) -> wafv2.CfnWebACL:
        def path_starts_with(path: str) -> wafv2.CfnWebACL.StatementProperty:
            return wafv2.CfnWebACL.StatementProperty(
                byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                    positional_constraint="STARTS_WITH",
                    search_string=path,
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")
                    ],
                )
            )

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        return wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=f"postpay-{stage}",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"postpay-{stage}"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitSensitiveRoutes",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=waf_rate_limit,
                            aggregate_key_type="IP",
                            scope_down_statement=wafv2.CfnWebACL.StatementProperty(
                                or_statement=wafv2.CfnWebACL.OrStatementProperty(
                                    # WAF sees the path as sent: under the stage at the API's
                                    # own URL (/live/signup), at the root on a custom domain.
                                    statements=[
                                        path_starts_with(prefix + p)
                                        for p in RATE_LIMITED_PATHS
                                        for prefix in ("", f"/{STAGE_NAME}")
                                    ]
                                )
                            ),
                        )
                    ),
                    visibility_config=visibility("RateLimitSensitiveRoutes"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="AWSManagedRulesCommonRuleSet",
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS",
                            name="AWSManagedRulesCommonRuleSet",
                            # The product accepts form bodies up to 16 KB and answers larger ones itself
                            # with a 413 page; the rule set's 8 KB body limit would block them blindly.
                            rule_action_overrides=[
                                wafv2.CfnWebACL.RuleActionOverrideProperty(
                                    name="SizeRestrictions_BODY",
                                    action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                                )
                            ],
                        )
                    ),
                    visibility_config=visibility("AWSManagedRulesCommonRuleSet"),
                ),
            ],
        )
