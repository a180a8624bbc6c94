"""A first deploy, rehearsed without an AWS account: the synthesized template's resources created in moto
from their own properties, each function run from its cdk.out asset with its template environment, and
API Gateway answering browser requests as the template routes them.

What is *not* from the template, and why: the SolusVM URL and the panel URL point at the local emulator
(the provider's SolusVM); the functions reach moto through ``AWS_ENDPOINT_URL``; X-Ray is off (no daemon);
third-party packages come from this machine's install of the same uv.lock, because the layer's compiled ones
are built for Lambda's arm64 (the product's own code comes from the assets, and the rehearsal checks that the
layer holds every locked runtime dependency).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError

from local.events import rest_event

ACCOUNT = "123456789012"
REGION = "us-east-1"
STAGE = "live"
HOST_SCRIPT = Path(__file__).with_name("lambda_host.py")
MISSING_TOKEN = {  # what API Gateway answers for a path outside any stage or resource
    "statusCode": 403,
    "headers": {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": "MissingAuthenticationTokenException",
    },
    "body": '{"message":"Missing Authentication Token"}',
}


class Unresolvable(KeyError):
    """The template refers to something the rehearsal did not create."""


class Deployment:
    """The stack as CloudFormation would create it: physical names and ids for the template's resources."""

    def __init__(self, template: dict, outdir: Path, *, stack_name: str, endpoint: str) -> None:
        self.template = template
        self.resources: dict[str, dict] = template["Resources"]
        self.outdir = outdir
        self.stack_name = stack_name
        self.endpoint = endpoint
        self.api_id = secrets.token_hex(5)
        self.physical: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}/{uuid.uuid4()}",
        }

    # intrinsic functions -----------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(key, arg)] = value.items()
            if key == "Ref":
                if arg in self.pseudo:
                    return self.pseudo[arg]
                if arg not in self.physical:
                    raise Unresolvable(f"Ref {arg} ({self.resources.get(arg, {}).get('Type')})")
                return self.physical[arg]
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if (logical_id, attribute) not in self.attributes:
                    raise Unresolvable(f"GetAtt {logical_id}.{attribute}")
                return self.attributes[(logical_id, attribute)]
            if key == "Fn::Join":
                return arg[0].join(str(self.resolve(v)) for v in arg[1])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(arg[0])]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

                def sub(match: re.Match) -> str:
                    name = match.group(1)
                    if name in names:
                        return str(names[name])
                    if "." in name:
                        return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
                    return str(self.resolve({"Ref": name}))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
        return {k: self.resolve(v) for k, v in value.items()}

    def generated_name(self, logical_id: str) -> str:
        """CloudFormation's name for a resource the template does not name."""
        return f"{self.stack_name}-{logical_id}-{secrets.token_hex(6).upper()}"[:80]

    def of_type(self, kind: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # creating the resources ----------------------------------------------------------------------

    def create(self) -> Deployment:
        """Every table, queue, bucket, secret, parameter and SES resource of the template, from its
        properties."""
        for logical_id in self.of_type("AWS::ApiGateway::RestApi"):
            self.physical[logical_id] = self.api_id
            self.attributes[(logical_id, "RootResourceId")] = "root"
        for logical_id, resource in self.of_type("AWS::ApiGateway::Stage").items():
            self.physical[logical_id] = resource["Properties"]["StageName"]
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            name = resource["Properties"].get("FunctionName")
            self.physical[logical_id] = name or self.generated_name(logical_id)
        for logical_id, resource in self.of_type("AWS::DynamoDB::Table").items():
            self._table(logical_id, self.resolve(resource["Properties"]))
        queues = self.of_type("AWS::SQS::Queue")
        for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q]["Properties"]):
            self._queue(logical_id, queues[logical_id]["Properties"])
        for logical_id, resource in self.of_type("AWS::S3::Bucket").items():
            self._bucket(logical_id, self.resolve(resource["Properties"]))
        for resource in self.of_type("AWS::S3::BucketPolicy").values():
            props = self.resolve(resource["Properties"])
            # moto is plain HTTP here, where AWS is HTTPS (boto3's default): the TLS-only deny would refuse
            # every request, so it is left out (tests/infra/test_stack.py asserts the template has it)
            policy = dict(props["PolicyDocument"])
            policy["Statement"] = [
                statement
                for statement in policy["Statement"]
                if "aws:SecureTransport" not in json.dumps(statement.get("Condition", {}))
            ]
            if policy["Statement"]:
                self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(policy))
        for logical_id, resource in self.of_type("AWS::SecretsManager::Secret").items():
            props = self.resolve(resource["Properties"])
            name = props.get("Name") or self.generated_name(logical_id)
            arn = self.client("secretsmanager").create_secret(Name=name, SecretString=props["SecretString"])[
                "ARN"
            ]
            self.physical[logical_id] = arn
        for logical_id, resource in self.of_type("AWS::SSM::Parameter").items():
            props = self.resolve(resource["Properties"])
            self.client("ssm").put_parameter(
                Name=props["Name"], Value=props["Value"], Type=props["Type"], Overwrite=True
            )
            self.physical[logical_id] = props["Name"]
        ses = self.client("sesv2")
        for logical_id, resource in self.of_type("AWS::SES::EmailIdentity").items():
            identity = self.resolve(resource["Properties"])["EmailIdentity"]
            ses.create_email_identity(EmailIdentity=identity)  # fails if it exists, as CloudFormation would
            self.physical[logical_id] = identity
        for logical_id, resource in self.of_type("AWS::SES::ConfigurationSet").items():
            name = self.resolve(resource["Properties"])["Name"]
            # moto keeps one account for every test in this process: a second variant finds it
            try:
                ses.create_configuration_set(ConfigurationSetName=name)
            except ClientError as error:
                if "AlreadyExists" not in error.response["Error"]["Code"]:
                    raise
            self.physical[logical_id] = name
        return self

    def _table(self, logical_id: str, props: dict) -> None:
        name = props.get("TableName") or self.generated_name(logical_id)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props["BillingMode"],
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = [
                {k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
                for i in props["GlobalSecondaryIndexes"]
            ]
        dynamodb = self.client("dynamodb")
        arn = dynamodb.create_table(**kwargs)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        self.physical[logical_id] = name
        self.attributes[(logical_id, "Arn")] = arn

    def _bucket(self, logical_id: str, props: dict) -> None:
        # CloudFormation's generated bucket names are lower case and at most 63 characters
        name = props.get("BucketName") or self.generated_name(logical_id).lower()[:63].rstrip("-")
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        if "BucketEncryption" in props:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={  # CloudFormation's property names, the API's
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                        for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "LifecycleConfiguration" in props:
            rules = []
            for rule in props["LifecycleConfiguration"]["Rules"]:
                converted: dict[str, Any] = {
                    "Status": rule["Status"],
                    "Filter": {"Prefix": rule.get("Prefix", "")},
                }
                if "ExpirationInDays" in rule:
                    converted["Expiration"] = {"Days": rule["ExpirationInDays"]}
                if "AbortIncompleteMultipartUpload" in rule:
                    converted["AbortIncompleteMultipartUpload"] = {
                        "DaysAfterInitiation": rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                    }
                rules.append(converted)
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self.physical[logical_id] = name
        self.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    def bucket(self) -> str:
        """The physical name of the template's one bucket (the operator's exports)."""
        [name] = [self.physical[k] for k in self.of_type("AWS::S3::Bucket")]
        return name

    def _queue(self, logical_id: str, raw: dict) -> None:
        props = self.resolve(raw)
        name = props.get("QueueName") or self.generated_name(logical_id)
        attributes = {
            key: str(props[key]) for key in ("VisibilityTimeout", "MessageRetentionPeriod") if key in props
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.physical[logical_id] = url
        self.attributes[(logical_id, "Arn")] = arn
        self.attributes[(logical_id, "QueueName")] = name

    # reading it back -------------------------------------------------------------------------------

    def output(self, name: str) -> str:
        return str(self.resolve(self.template["Outputs"][name]["Value"]))

    def table(self, logical_name: str) -> str:
        """The physical name of a table of ``postpay.adapters.tables``, as created."""
        [name] = [
            self.physical[k]
            for k in self.of_type("AWS::DynamoDB::Table")
            if self.physical[k].endswith("-" + logical_name)
        ]
        return name

    def jobs_queue(self) -> str:
        [url] = [
            self.physical[k]
            for k, v in self.of_type("AWS::SQS::Queue").items()
            if "RedrivePolicy" in v["Properties"]
        ]
        return url

    def function_id(self, handler: str, prefix: str = "") -> str:
        [found] = [
            k
            for k, v in self.of_type("AWS::Lambda::Function").items()
            if v["Properties"]["Handler"] == handler and k.startswith(prefix)
        ]
        return found

    def layer_distributions(self) -> set[str]:
        """The distributions the layer asset holds (normalized names)."""
        [layer] = self.of_type("AWS::Lambda::LayerVersion").values()
        python = self.asset(layer["Properties"]["Content"]) / "python"
        return {_normalized(d.name.split("-")[0]) for d in python.glob("*.dist-info")}

    def asset(self, code: dict) -> Path:
        path = self.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
        assert path.is_dir(), f"no asset for {code}"
        return path

    @contextmanager
    def functions(
        self, overrides: dict[str, str], log_dir: Path, lambda_service: LambdaService
    ) -> Iterator[dict[str, Function]]:
        """Every function of the template in its own process, from its assets, with its environment."""
        started: dict[str, Function] = {}
        try:
            for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
                props = resource["Properties"]
                [layer_ref] = props["Layers"]
                layer = self.resources[layer_ref["Ref"]]["Properties"]["Content"]
                environment = {k: str(v) for k, v in self.resolve(props["Environment"]["Variables"]).items()}
                started[logical_id] = Function(
                    name=self.physical[logical_id],
                    code=self.asset(props["Code"]),
                    layer=self.asset(layer),
                    handler=props["Handler"],
                    timeout=int(props["Timeout"]),
                    memory=int(props.get("MemorySize", 128)),
                    environment={**environment, **overrides},
                    endpoint=self.endpoint,
                    lambda_endpoint=lambda_service.endpoint,
                    log=log_dir / f"{logical_id}.log",
                ).start()
                lambda_service.functions[started[logical_id].name] = started[logical_id]
            yield started
        finally:
            for function in started.values():
                function.stop()


class Function:
    """One function's execution environment (tests/infra/lambda_host.py in a subprocess)."""

    def __init__(
        self,
        *,
        name: str,
        code: Path,
        layer: Path,
        handler: str,
        timeout: int,
        memory: int,
        environment: dict[str, str],
        endpoint: str,
        lambda_endpoint: str,
        log: Path,
    ) -> None:
        self.name = name
        self.environment = environment
        self.log = log
        packages = sysconfig.get_paths()["purelib"]  # this machine's install of the same lock
        self.command = [
            sys.executable,
            "-I",
            "-S",
            str(HOST_SCRIPT),
            str(code),
            str(layer),
            handler,
            str(timeout),
            packages,
        ]
        self.runtime_env = {
            **environment,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "LAMBDA_TASK_ROOT": str(code),
            "_HANDLER": handler,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Function:
        log = self.log.open("w")
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=self.runtime_env,
            text=True,
        )
        ready = self._read()
        assert ready.get("ready"), f"{self.name} did not start: {ready}\n{self.log.read_text()[-3000:]}"
        return self

    def invoke(self, event: Any) -> Any:
        """The handler's answer; an exception (FunctionError) if it raised."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event}) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise FunctionError(answer["error"])
        return answer["result"]

    def _read(self) -> dict:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class FunctionError(RuntimeError):
    """The function raised: what `aws lambda invoke` reports as FunctionError."""


class LambdaService:
    """Lambda's Invoke API for the functions' own calls (the automation function invokes itself
    asynchronously): asynchronous invocations are kept and run by ``drain``, after the caller returned."""

    def __init__(self) -> None:
        import threading

        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.pending: list[tuple[str, dict]] = []
        self.functions: dict[str, Function] = {}

        def app(environ: dict, start_response: Any) -> Any:
            request = Request(environ)
            match = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", request.path)
            if request.method != "POST" or match is None:
                return Response("not found", status=404)(environ, start_response)
            name = match.group(1)
            if name not in self.functions:
                body = json.dumps({"Type": "User", "message": f"Function not found: {name}"})
                headers = {"x-amzn-ErrorType": "ResourceNotFoundException"}
                return Response(body, status=404, headers=headers)(environ, start_response)
            assert request.headers.get("X-Amz-Invocation-Type") == "Event", "only asynchronous self-invokes"
            self.pending.append((name, json.loads(request.get_data() or b"{}")))
            return Response(b"", status=202)(environ, start_response)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def drain(self) -> int:
        """Runs every asynchronous invocation made so far; how many ran."""
        ran = 0
        while self.pending:
            name, event = self.pending.pop(0)
            self.functions[name].invoke(event)
            ran += 1
        return ran

    def stop(self) -> None:
        self._server.shutdown()


class Gateway:
    """API Gateway (REST, proxy integrations) as the template configures it, for one host.

    At the API's own URL a request must name the stage (``/live/...``) and the function sees the path
    without it; on a custom domain mapped at its root the path is passed as is. A path outside the stage,
    or matching no resource, is answered by the gateway itself with 403, as API Gateway does."""

    def __init__(self, deployment: Deployment, functions: dict[str, Function], site_url: str) -> None:
        parts = urlsplit(site_url)
        self.host = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.functions = functions
        self.routes = self._routes(deployment.resources)
        [api] = [v for v in deployment.resources.values() if v["Type"] == "AWS::ApiGateway::RestApi"]
        self.binary_media_types: list[str] = api["Properties"].get("BinaryMediaTypes", [])

    @staticmethod
    def _routes(resources: dict) -> list[tuple[str, str]]:
        """(resource path, function logical id), for every method of the API."""
        api_resources = {k: v for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::Resource"}
        functions = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"]

        def path_of(logical_id: str) -> str:
            props = api_resources[logical_id]["Properties"]
            parent = props["ParentId"]
            prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
            return f"{prefix}/{props['PathPart']}"

        routes = []
        for method in (v for v in resources.values() if v["Type"] == "AWS::ApiGateway::Method"):
            props = method["Properties"]
            resource = props["ResourceId"]
            path = path_of(resource["Ref"]) if "Ref" in resource else "/"
            uri = json.dumps(props["Integration"]["Uri"])
            [target] = [f for f in functions if f in uri]
            routes.append((path, target))
        return routes

    def match(self, path: str) -> tuple[str, str, dict[str, str]] | None:
        """The resource a path reaches: a literal path first, then {param}, then {proxy+}."""
        have = [p for p in path.split("/") if p]
        best: tuple[int, str, str, dict[str, str]] | None = None
        for template, function in self.routes:
            want = [p for p in template.split("/") if p]
            params: dict[str, str] = {}
            if want and want[-1].endswith("+}"):
                if len(have) < len(want) or want[:-1] != have[: len(want) - 1]:
                    continue
                params[want[-1][1:-2]] = "/".join(have[len(want) - 1 :])
                rank = 2
            else:
                pairs = list(zip(want, have, strict=False))
                if len(want) != len(have) or any(not w.startswith("{") and w != h for w, h in pairs):
                    continue
                params = {w[1:-1]: h for w, h in pairs if w.startswith("{")}
                rank = 1 if params else 0
            if best is None or rank < best[0]:
                best = (rank, template, function, params)
        return None if best is None else best[1:]

    def __call__(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, source_ip: str
    ) -> dict:
        parts = urlsplit(url)
        assert parts.netloc == self.host, f"the browser left the site: {url}"
        path = parts.path or "/"
        if self.base_path:
            if path != self.base_path and not path.startswith(self.base_path + "/"):
                return MISSING_TOKEN
            resource_path = path[len(self.base_path) :] or "/"
        else:
            resource_path = path
        route = self.match(resource_path)
        if route is None:
            return MISSING_TOKEN
        template, function, params = route
        event = rest_event(
            method,
            resource_path,
            headers=headers,
            query=parts.query,
            body=body,
            source_ip=source_ip,
            resource=template,
            stage=STAGE,
            request_path=path,
            path_parameters=params,
        )
        if body and self._binary(headers.get("Content-Type", "")):
            # a body whose type is one of the API's binary media types reaches the function base64-encoded
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        return self.functions[function].invoke(event)

    def _binary(self, content_type: str) -> bool:
        kind = content_type.split(";")[0].strip().lower()
        major = kind.split("/")[0]
        return any(t in ("*/*", kind, f"{major}/*") for t in self.binary_media_types)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_runtime_distributions(requirements: Path) -> set[str]:
    """The runtime distributions of uv.lock, as `make layer` exported them."""
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if line and not line.startswith("-"):
            names.add(_normalized(re.split(r"[=<>\[ ]", line, maxsplit=1)[0]))
    return names
