"""What a first `cdk deploy` needs: the site's own address in every function without a dependency cycle,
a custom domain at its root, an existing SES identity, and retries of a failed first deploy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.config import ContextError, StackConfig
from tests.infra.conftest import VARIANTS

STAGE_URL = {
    "Fn::Join": [
        "",
        [
            "https://",
            {"Ref": "SiteApi5EF728C2"},
            ".execute-api.",
            {"Ref": "AWS::Region"},
            ".",
            {"Ref": "AWS::URLSuffix"},
            "/live/",
        ],
    ]
}


def _of_type(resources: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def _references(value: object) -> set[str]:
    """Logical ids a property value refers to (Ref, Fn::GetAtt, ${Name} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                for part in text.split("${")[1:]:
                    found.add(part.split("}")[0].split(".")[0])
                found |= _references(inner if isinstance(inner, list) else [])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_template_has_no_dependency_cycle(synth, variant):
    # Given the template CloudFormation receives
    resources = synth(variant).json["Resources"]
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        graph[logical_id] = {
            r for r in _references(resource.get("Properties", {})) | set(depends) if r in resources
        }
    # Then every resource can be created after what it needs (a topological order exists)
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {r for r, needs in graph.items() if r not in done and needs <= done}
        assert ready, f"a cycle among {sorted(set(graph) - done)[:10]}"
        done |= ready


def _environments(resources: dict) -> dict[str, dict]:
    return {
        k: v["Properties"]["Environment"]["Variables"]
        for k, v in _of_type(resources, "AWS::Lambda::Function").items()
    }


def test_without_a_domain_every_function_is_told_the_apis_own_stage_url(synth):
    # Given the README's first deploy: no domain name
    template = synth("stage-url").json
    # Then every function builds its links from https://<api id>.execute-api.<region>.<suffix>/live/ …
    for name, env in _environments(template["Resources"]).items():
        assert env["PUBLIC_BASE_URL"] == STAGE_URL, name
    # … which is the stage the API deploys, and the SiteUrl the README opens
    [stage] = _of_type(template["Resources"], "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "live"
    assert template["Outputs"]["SiteUrl"]["Value"] == STAGE_URL
    assert not _of_type(template["Resources"], "AWS::ApiGateway::DomainName")
    [api] = _of_type(template["Resources"], "AWS::ApiGateway::RestApi").values()
    assert not api["Properties"].get("DisableExecuteApiEndpoint")


def test_a_custom_domain_serves_the_site_at_its_root_with_an_alias_record(synth):
    # Given domainName, certificateArn and a hosted zone
    template = synth("custom-domain").json
    resources = template["Resources"]
    # Then links are built from https://<domain>/ …
    for name, env in _environments(resources).items():
        assert env["PUBLIC_BASE_URL"] == "https://billing.example.com/", name
    assert template["Outputs"]["SiteUrl"]["Value"] == "https://billing.example.com/"
    # … the API's own URL is off (its pages would link to paths without the stage) …
    [api] = _of_type(resources, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["DisableExecuteApiEndpoint"] is True
    # … the domain maps the live stage at its root (no base path), so paths carry no stage …
    [domain] = _of_type(resources, "AWS::ApiGateway::DomainName").values()
    assert domain["Properties"]["DomainName"] == "billing.example.com"
    assert domain["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    [mapping] = _of_type(resources, "AWS::ApiGateway::BasePathMapping").values()
    assert mapping["Properties"].get("BasePath", "") == ""
    [stage_id] = _of_type(resources, "AWS::ApiGateway::Stage")
    assert mapping["Properties"]["Stage"] == {"Ref": stage_id}
    # … and the name resolves: an A alias record in the given zone
    [record] = _of_type(resources, "AWS::Route53::RecordSet").values()
    assert record["Properties"]["Type"] == "A" and record["Properties"]["Name"] == "billing.example.com."
    assert record["Properties"]["HostedZoneId"] == "Z0123456789ABCDEFGHIJ"
    assert "AliasTarget" in record["Properties"]


def _send_resources(resources: dict) -> list:
    found = []
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "ses:SendEmail" in json.dumps(statement["Action"]):
                found.append(statement["Resource"])
    return found


def test_a_new_ses_identity_is_created_by_default(synth):
    resources = synth("stage-url").json["Resources"]
    [identity_id] = _of_type(resources, "AWS::SES::EmailIdentity")
    assert resources[identity_id]["Properties"]["EmailIdentity"] == "example.com"
    for granted in _send_resources(resources):
        assert {"Fn::GetAtt": [identity_id, "Arn"]} in granted or any(
            identity_id in json.dumps(r) for r in granted
        )


def test_an_existing_ses_identity_is_used_not_created(synth):
    # Given a second stage on a domain whose identity exists (useExistingSesIdentity)
    resources = synth("existing-ses-identity").json["Resources"]
    # Then no identity is created (CloudFormation would fail with AlreadyExists) …
    assert not _of_type(resources, "AWS::SES::EmailIdentity")
    # … and the functions may send from exactly that identity, by its ARN
    granted = _send_resources(resources)
    assert granted
    for resources_ in granted:
        assert any(":identity/example.com" in json.dumps(r) for r in resources_)
    # … while the stage's own configuration set keeps stages apart
    [config_set] = _of_type(resources, "AWS::SES::ConfigurationSet").values()
    assert config_set["Properties"]["Name"] == "postpay-test"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_failed_first_deploy_leaves_nothing_a_retry_collides_with(synth, variant):
    resources = synth(variant).json["Resources"]
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        retained = resource.get("DeletionPolicy") == "Retain"
        if resource["Type"] == "AWS::DynamoDB::Table":
            # retained and protected, so named per stack creation (the stack's id): a new stack, new names
            assert retained and props["DeletionProtectionEnabled"] is True
            assert "AWS::StackId" in json.dumps(props["TableName"]), logical_id
        elif resource["Type"] == "AWS::SecretsManager::Secret":
            assert "Name" not in props and resource["DeletionPolicy"] == "RetainExceptOnCreate"
        elif retained:
            # anything else kept on delete carries no fixed name
            named = [k for k in props if k.endswith("Name") and isinstance(props[k], str)]
            assert not named, (logical_id, named)


def test_publicbaseurl_is_refused_with_a_message_saying_what_to_do():
    context = {"publicBaseUrl": "https://billing.example.net"}
    with pytest.raises(ContextError, match="publicBaseUrl is no longer read"):
        StackConfig.from_context(context.get)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"useExistingSesIdentity": "yes"}, "useExistingSesIdentity must be true or false"),
        (
            {"domainName": "billing.example.com", "certificateArn": "arn:x", "hostedZoneId": "Z1"},
            "go together",
        ),
        (
            {
                "domainName": "billing.example.net",
                "certificateArn": "arn:x",
                "hostedZoneId": "Z1",
                "hostedZoneName": "example.com",
            },
            "is not in hostedZoneName",
        ),
        ({"hostedZoneId": "Z1", "hostedZoneName": "example.com"}, "needs domainName"),
    ],
)
def test_bad_deploy_context_is_refused_naming_the_key(context, message):
    with pytest.raises(ContextError, match=message):
        StackConfig.from_context(context.get)


def test_use_existing_ses_identity_reads_true_from_the_command_line():
    # `cdk deploy -c useExistingSesIdentity=true` gives a string; cdk.json gives a boolean
    assert StackConfig.from_context({"useExistingSesIdentity": "true"}.get).use_existing_ses_identity
    assert not StackConfig.from_context({"useExistingSesIdentity": False}.get).use_existing_ses_identity


def test_the_layer_ships_tzdata_so_zones_need_no_os_files(synth):
    # Given the layer asset alone on the path, and no OS time zone directory
    template = synth("stage-url").json
    [layer] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    asset = (
        synth("stage-url").outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    )
    probe = (
        "import sys, zoneinfo\n"
        f"sys.path[:0] = [{str(asset / 'python')!r}]\n"
        "zoneinfo.reset_tzpath(to=[])\n"
        "import tzdata\n"
        "assert tzdata.__file__.startswith(sys.path[0]), tzdata.__file__\n"
        "print(zoneinfo.ZoneInfo('Europe/Berlin').key)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=False
    )
    # Then a billing time zone still resolves, from the layer's tzdata
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Europe/Berlin"


def test_the_run_handler_may_invoke_itself_and_nothing_else(synth):
    # Operator runs are accepted at once and queued by an asynchronous invocation of the same function
    resources = synth("stage-url").json["Resources"]
    functions = _of_type(resources, "AWS::Lambda::Function")
    [run] = [f for k, f in functions.items() if k.startswith("AutomationRunFunction")]
    name = run["Properties"]["FunctionName"]
    assert name == "postpay-prod-automation"
    assert run["Properties"]["Environment"]["Variables"]["AUTOMATION_FUNCTION_NAME"] == name
    role = run["Properties"]["Role"]["Fn::GetAtt"][0]
    invokes = [
        statement
        for policy in _of_type(resources, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in json.dumps(statement["Action"])
        and {"Ref": role} in policy["Properties"]["Roles"]
    ]
    [statement] = invokes
    assert json.dumps(statement["Resource"]).endswith(f':function:{name}"]]}}'), statement["Resource"]


def test_the_carry_over_is_passed_only_where_the_operator_turned_it_on_with_cards(synth):
    # Given a stage with cards and carryBelowMinimum, and the README's first deploy (neither)
    with_carry = _environments(synth("existing-ses-identity").json["Resources"])
    without = _environments(synth("stage-url").json["Resources"])
    # Then every function of the first is told CARRY_BELOW_MINIMUM=true, and none of the second
    assert {env.get("CARRY_BELOW_MINIMUM") for env in with_carry.values()} == {"true"}
    assert all("CARRY_BELOW_MINIMUM" not in env for env in without.values())
