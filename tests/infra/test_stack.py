"""The synthesized stack, asserted: routes, least privilege, tables, operations, cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

from infra.components.automation import EXPORT_ACTIONS, EXPORT_DAYS
from infra.stack import READS_PRICES, SENDS_MAIL, TABLE_ACCESS, USES_SOLUSVM, USES_STRIPE
from postpay.adapters.tables import table_specs
from postpay.routes import FALLBACK_FUNCTION, ROUTES
from tests.infra.conftest import VARIANTS

# postpay-<stage>-<first part of the stack's UUID>-: unique per stack creation (infra/components/data.py)
TABLE_PREFIX = {
    "Fn::Join": [
        "",
        [
            "postpay-prod-",
            {
                "Fn::Select": [
                    0,
                    {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]},
                ]
            },
            "-",
        ],
    ]
}


def _of_type(resources: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def _function_id(resources: dict, folder: str) -> str:
    """The logical id of a function: "signup" -> SignupFunction…, "AutomationRun" -> AutomationRunFunction…"""
    prefix = f"{folder[0].upper()}{folder[1:]}Function"
    [logical_id] = [k for k in _of_type(resources, "AWS::Lambda::Function") if k.startswith(prefix)]
    return logical_id


def _resource_paths(resources: dict) -> dict[str, str]:
    """API Gateway resource logical id -> its full path."""
    api_resources = _of_type(resources, "AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            props = api_resources[logical_id]["Properties"]
            parent = props["ParentId"]
            prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
            paths[logical_id] = f"{prefix}/{props['PathPart']}"
        return paths[logical_id]

    for logical_id in api_resources:
        path_of(logical_id)
    return paths


def test_every_route_reaches_the_right_function(resources):
    paths = _resource_paths(resources)
    routed: dict[str, str] = {}
    for method in _of_type(resources, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource = props["ResourceId"]
        path = paths[resource["Ref"]] if "Ref" in resource else "/"
        assert props["HttpMethod"] == "ANY", "handlers answer wrong methods with a 405 page"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        uri = json.dumps(props["Integration"]["Uri"])
        [target] = [name for name in TABLE_ACCESS if _function_id(resources, name) in uri]
        routed[path] = target
    expected = {path: route.function for path, route in ROUTES.items()}
    expected["/{proxy+}"] = FALLBACK_FUNCTION
    assert routed == expected


def test_functions_run_python_on_arm64_with_the_layer_tracing_and_json_logs(resources):
    functions = _of_type(resources, "AWS::Lambda::Function")
    assert len(functions) == len(TABLE_ACCESS) + 2  # the pages, and automation's run handler and worker
    for function in functions.values():
        props = function["Properties"]
        assert props["Runtime"].startswith("python3.1") and int(props["Runtime"].split(".")[1]) >= 12
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert len(props["Layers"]) == 1
        assert props["Environment"]["Variables"]["TABLE_PREFIX"] == TABLE_PREFIX


def _statements(resources: dict, folder: str) -> list[dict]:
    function = resources[_function_id(resources, folder)]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict] = []
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _table_name(table: dict) -> str:
    """The table's logical name: its TableName is the stack's table prefix joined with it."""
    name = table["Properties"]["TableName"]
    assert name["Fn::Join"][1][:-1] == TABLE_PREFIX["Fn::Join"][1][:-1], name
    return name["Fn::Join"][1][-1].removeprefix("-")


def _table_id(resources: dict, logical_name: str) -> str:
    [table_id] = [
        k for k, v in _of_type(resources, "AWS::DynamoDB::Table").items() if _table_name(v) == logical_name
    ]
    return table_id


# The DynamoDB grants: against the calls each function was recorded making (tests/infra/test_iam.py)
@pytest.mark.parametrize("function", ["AutomationRun", "AutomationWorker"])
def test_automation_roles_grant_only_what_they_use(resources, function):
    statements = _statements(resources, function)
    everything = set().union(*(_actions(s) for s in statements))
    assert {"secretsmanager:GetSecretValue", "ssm:GetParameter", "ses:SendEmail"} <= everything
    assert ("sqs:SendMessage" in everything) == (function == "AutomationRun")
    for statement in statements:
        if statement["Resource"] == "*":
            assert _actions(statement) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, statement


def test_invoicing_queue_worker_and_schedule(template, resources):
    queues = _of_type(resources, "AWS::SQS::Queue")
    [jobs] = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert jobs["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 6, "5 attempts, then one to record"
    assert jobs["Properties"]["VisibilityTimeout"] == 6 * 900
    assert jobs["Properties"]["VisibilityTimeout"] > 20 * 60, "longer than the invoice email lease"
    [mapping] = _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    assert (
        mapping["Properties"]["BatchSize"] == 8
        and mapping["Properties"]["MaximumBatchingWindowInSeconds"] == 1
    )
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == 20
    assert _function_id(resources, "AutomationWorker") in json.dumps(mapping["Properties"]["FunctionName"])
    [schedule] = _of_type(resources, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == "cron(5 0 * * ? *)" and props["ScheduleExpressionTimezone"] == "UTC"
    assert _function_id(resources, "AutomationRun") in json.dumps(props["Target"]["Arn"])
    assert json.loads(props["Target"]["Input"])["schedule"] == "daily"
    worker = resources[_function_id(resources, "AutomationWorker")]["Properties"]
    assert worker["Handler"] == "worker.handler"
    assert worker["Environment"]["Variables"]["INVOICE_MAX_ATTEMPTS"] == "5"
    # SolusVM's budget: worker environments at once x usage calls each = the budget every worker checks
    env = worker["Environment"]["Variables"]
    scaling = mapping["Properties"]["ScalingConfig"]
    assert env["INVOICE_WORKER_CONCURRENCY"] == str(scaling["MaximumConcurrency"])
    assert int(env["SOLUSVM_MAX_CONCURRENCY"]) == 20 * 5 == int(env["INVOICE_WORKER_CONCURRENCY"]) * 5
    outputs = template.to_json()["Outputs"]
    assert _function_id(resources, "AutomationRun") in json.dumps(outputs["AutomationFunctionName"])


@pytest.mark.parametrize("folder", sorted(TABLE_ACCESS))
def test_each_role_grants_only_what_its_function_uses(resources, folder):
    statements = _statements(resources, folder)
    everything = set().union(*(_actions(s) for s in statements))
    assert ("secretsmanager:GetSecretValue" in everything) == (folder in USES_SOLUSVM | USES_STRIPE)
    assert bool(_stripe_secrets_read(statements)) == (folder in USES_STRIPE)
    assert ("ssm:GetParameter" in everything) == (folder in READS_PRICES)
    assert ("ses:SendEmail" in everything) == (folder in SENDS_MAIL)
    for statement in statements:
        if statement["Resource"] == "*":
            assert _actions(statement) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, statement


def _stripe_secrets_read(statements: list[dict]) -> set[str]:
    read = set()
    for statement in statements:
        if "secretsmanager:GetSecretValue" in _actions(statement):
            targets = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            read |= {t["Ref"] for t in targets if isinstance(t, dict) and "Stripe" in t.get("Ref", "")}
    return read


def _keys(schema: list[dict]) -> set[tuple[str, str]]:
    return {(k["AttributeName"], k["KeyType"]) for k in schema}


def test_tables_match_the_code_models(resources):
    for spec in table_specs():
        props = resources[_table_id(resources, spec.logical_name)]["Properties"]
        assert _keys(props["KeySchema"]) == _keys(spec.schema["key_schema"])
        assert {tuple(sorted(d.items())) for d in props["AttributeDefinitions"]} == {
            tuple(sorted(d.items())) for d in spec.schema["attribute_definitions"]
        }
        indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {i["index_name"] for i in spec.schema["global_secondary_indexes"]}
        for index in spec.schema["global_secondary_indexes"]:
            deployed = indexes[index["index_name"]]
            assert _keys(deployed["KeySchema"]) == _keys(index["key_schema"])
            assert deployed["Projection"]["ProjectionType"] == index["projection"]["ProjectionType"]
        if spec.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props


def test_tables_are_protected_and_retained(resources):
    tables = _of_type(resources, "AWS::DynamoDB::Table")
    assert len(tables) == len(table_specs())
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["DeletionProtectionEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"


def test_logs_have_retention(resources):
    for group in _of_type(resources, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 90


def test_api_stage_has_access_logs_throttling_and_waf(template, resources):
    [stage] = _of_type(resources, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert "DestinationArn" in props["AccessLogSetting"]
    settings = props["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    [acl] = _of_type(resources, "AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    rate = rules["RateLimitSensitiveRoutes"]["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == 100
    guarded = {
        s["ByteMatchStatement"]["SearchString"]
        for s in rate["ScopeDownStatement"]["OrStatement"]["Statements"]
    }
    paths = {"/signup", "/verify", "/login", "/forgot", "/reset", "/account/password"}
    assert guarded == paths | {f"/live{p}" for p in paths}, "at the stage URL and at a custom domain"
    assert "AWSManagedRulesCommonRuleSet" in rules
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)


def test_mail_suppresses_bounces_and_sends_events(template):
    template.has_resource_properties(
        "AWS::SES::ConfigurationSet",
        {"SuppressionOptions": {"SuppressedReasons": Match.array_with(["BOUNCE", "COMPLAINT"])}},
    )
    template.has_resource_properties(
        "AWS::SES::ConfigurationSetEventDestination",
        {
            "EventDestination": Match.object_like(
                {"MatchingEventTypes": Match.array_with(["bounce", "complaint"])}
            )
        },
    )


def test_operator_settings_secret_and_price_parameters(template, resources):
    found = _of_type(resources, "AWS::SecretsManager::Secret")
    assert len(found) == 3, "the SolusVM token, Stripe's secret key and its webhook signing secret"
    for secret in found.values():
        assert "Name" not in secret["Properties"], "no fixed name: a retried first deploy cannot collide"
        assert secret["DeletionPolicy"] == "RetainExceptOnCreate", "a rolled-back first deploy leaves none"
    template.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/postpay/prod/token-price", "Value": "0.001"}
    )
    template.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/postpay/prod/currency", "Value": "USD"}
    )


def test_alarms_and_outputs(template, resources):
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
    names = {a["Properties"].get("MetricName") for a in alarms.values()}
    assert {
        "Errors",
        "Throttles",
        "5XXError",
        "Reputation.BounceRate",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "HoursSinceLastDailyRun",
        "ChargesFailed",
        "PaymentsOnVoidInvoices",
        "WebhookRefused",
    } <= names
    throttled = [a for a in alarms.values() if a["Properties"].get("MetricName") == "Throttles"]
    assert len(throttled) == len(_of_type(resources, "AWS::Lambda::Function")), "one per function"
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    outputs = template.to_json()["Outputs"]
    assert {"SiteUrl", "SolusVmTokenSecret", "StripeSecretKeySecret", "StripeWebhookSecretSecret"} <= set(
        outputs
    )


def test_a_single_payment_on_a_void_invoice_alarms(resources):
    [alarm] = [
        a
        for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "PaymentsOnVoidInvoices"
    ]
    props = alarm["Properties"]
    assert props["Namespace"] == "PostPay" and props["Threshold"] == 1 and props["Statistic"] == "Sum"
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and props["AlarmActions"]


def test_missed_daily_run_counts_only_scheduled_runs_and_is_quiet_before_the_first(resources):
    [missed] = [a for k, a in _of_type(resources, "AWS::CloudWatch::Alarm").items() if "MissedDailyRun" in k]
    props = missed["Properties"]
    # emitted by scheduled runs only (not operator invokes), and not by the first one
    assert props["Namespace"] == "PostPay" and props["MetricName"] == "HoursSinceLastDailyRun"
    assert props["TreatMissingData"] == "notBreaching"
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and props["Threshold"] > 24
    [failed] = [a for k, a in _of_type(resources, "AWS::CloudWatch::Alarm").items() if "ScheduleFailed" in k]
    metrics = {
        m["MetricStat"]["Metric"]["MetricName"] for m in failed["Properties"]["Metrics"] if "MetricStat" in m
    }
    assert metrics == {"TargetErrorCount", "InvocationDroppedCount"}


def test_the_apis_execution_logs_have_a_retention_and_exist_before_the_stage(resources):
    groups = _of_type(resources, "AWS::Logs::LogGroup")
    [(group_id, group)] = [
        (k, g) for k, g in groups.items() if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"])
    ]
    assert group["Properties"]["RetentionInDays"] == 90
    [stage] = _of_type(resources, "AWS::ApiGateway::Stage").values()
    assert group_id in stage["DependsOn"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cdk_nag_finds_no_unsuppressed_errors(synth, variant):
    stack = synth(variant).stack
    errors = Annotations.from_stack(stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [f"{e.id}: {str(e.entry.data)[:120]}" for e in errors] == []


def test_every_nag_suppression_names_rule_and_reason(resources):
    for logical_id, resource in resources.items():
        for suppression in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert suppression["id"].startswith("AwsSolutions-"), logical_id
            assert len(suppression["reason"]) >= 20, (logical_id, suppression)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_finds_no_errors(synth, variant):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", str(synth(variant).template_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    # cfn-lint's exit code is a bit field: 2 errors, 4 warnings, 8 informational
    assert not result.returncode & ~(4 | 8), result.stdout + result.stderr
    assert not result.returncode & 2, result.stdout


def test_the_exports_bucket_is_private_encrypted_expiring_and_written_only_by_the_run_handler(resources):
    [(bucket_id, bucket)] = _of_type(resources, "AWS::S3::Bucket").items()
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == EXPORT_DAYS and rule["Status"] == "Enabled"
    [policy] = [p for p in _of_type(resources, "AWS::S3::BucketPolicy").values()]
    [deny] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Only the run handler touches it: put and get, on exports/ only
    for folder in ["AutomationRun", "AutomationWorker", *TABLE_ACCESS]:
        s3 = [s for s in _statements(resources, folder) if any(a.startswith("s3:") for a in _actions(s))]
        if folder != "AutomationRun":
            assert s3 == [], folder
            continue
        [statement] = s3
        assert _actions(statement) == set(EXPORT_ACTIONS)
        assert json.dumps(statement["Resource"]) == json.dumps(
            {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/exports/*"]]}
        )
