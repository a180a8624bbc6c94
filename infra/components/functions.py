"""One place for Lambda defaults: Python on arm64, the shared layer, JSON logs with retention, X-Ray,
and a role per function that starts empty and receives only the grants its caller adds."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagSuppressions
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
LAYER_DIR = ROOT / "build" / "layer"
RUNTIME = lambda_.Runtime.PYTHON_3_14

# dynamodb actions per (function, table). TransactWriteItems is authorized per item action.
READ = ["dynamodb:GetItem"]


class SharedLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        if not (LAYER_DIR / "python" / "postpay").is_dir():
            raise FileNotFoundError(
                f"{LAYER_DIR} is missing: run `make layer` (it builds the layer for Lambda's arm64 platform "
                "from uv.lock, without Docker)"
            )
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(LAYER_DIR)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="postpay package and its locked dependencies",
            removal_policy=RemovalPolicy.RETAIN,
        )


class PythonFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        folder: str,
        handler: str = "app.handler",
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
        timeout_seconds: int = 29,
        memory_mb: int = 512,
        reserved_concurrency: int | None = None,
        function_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Post-Pay {folder} function: only what it uses",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            code=lambda_.Code.from_asset(str(ROOT / "functions" / folder), exclude=["__pycache__", "*.pyc"]),
            handler=handler,
            function_name=function_name,
            layers=[layer],
            role=self.role,
            environment={
                "POWERTOOLS_SERVICE_NAME": "postpay",
                "POWERTOOLS_METRICS_NAMESPACE": "PostPay",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
            },
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group,
            reserved_concurrent_executions=reserved_concurrency,
        )
        log_group_id = Stack.of(self).get_logical_id(self.log_group.node.default_child)  # type: ignore[arg-type]
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "appliesTo": [f"Resource::<{log_group_id}.Arn>:*"],
                    "reason": "Log streams of this function's own log group: names are not known ahead.",
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "appliesTo": ["Resource::*"],
                    "reason": "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level scoping.",
                },
            ],
            apply_to_children=True,
        )

    def grant_table(self, table: object, actions: list[str], *, indexes: list[str] | None = None) -> None:
        """``actions`` on the table, and on the named indexes (never ``index/*``)."""
        arn = table.table_arn  # type: ignore[attr-defined]
        resources = [arn, *(f"{arn}/index/{name}" for name in indexes or [])]
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
