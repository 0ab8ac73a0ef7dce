"""Fixtures of the ECS runner tests: moto (in-process or ThreadedMotoServer), the CloudFormation stack
of include/aws deployed into it, and a fake Fargate that really runs the worker (tests/aws/fakes.py)."""

from __future__ import annotations

import io
import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.aws.fakes import ACCOUNT, REGION, FakeFargate

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "include" / "aws" / "pg-migration.yaml"
if str(REPO / "dags") not in sys.path:
    sys.path.insert(0, str(REPO / "dags"))

#: Passwords no request, XCom or log may ever contain (unit tests' fake connections).
SOURCE_PW = "SrcPw-RECOGNISABLE-4f1e9a"
TARGET_PW = "TgtPw-RECOGNISABLE-b27c0d"


@dataclass
class Stack:
    """The deployed stack: its outputs as the Airflow environment, and what the tests need."""

    env: dict[str, str]  # PG_MIGRATION_ECS_* from the stack outputs
    outputs: dict[str, str]
    task_definition: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # name -> ARN


def clients(endpoint_url: str | None = None) -> dict[str, Any]:
    kw = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    return {n: boto3.client(n, **kw) for n in ("ec2", "ecs", "logs", "secretsmanager", "cloudformation", "iam")}


def deploy_stack(
    c: dict[str, Any],
    source_host: str,
    source_port: int,
    source_user: str,
    source_password: str,
    target_host: str,
    target_port: int,
    target_user: str,
    target_password: str,
    rehearsal: tuple[str, int, str, str] | None = None,
    rehearsal_secret_arn: str | None = None,
) -> Stack:
    """Create the network and the two password secrets, then deploy include/aws/pg-migration.yaml.

    ``rehearsal`` (host, port, user, password): also the rehearsal task definition, with its own
    target secret (``rehearsal_secret_arn``: map that secret instead, e.g. the go-live one)."""
    vpc = c["ec2"].create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    c["ec2"].modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto: awsvpc tasks need it
    subnet = c["ec2"].create_subnet(VpcId=vpc, CidrBlock="10.80.1.0/24")["Subnet"]["SubnetId"]
    src_secret = c["secretsmanager"].create_secret(Name="pg-migration/source", SecretString=source_password)["ARN"]
    # Aurora's managed master secret is JSON: {"username": ..., "password": ...}
    tgt_secret = c["secretsmanager"].create_secret(
        Name="rds!cluster-aurora", SecretString=json.dumps({"username": target_user, "password": target_password})
    )["ARN"]
    params = {
        "VpcId": vpc,
        "SubnetIds": subnet,
        "SourceCidr": "10.0.0.0/8",
        "TargetCidr": "10.80.0.0/16",
        "SourceHost": source_host,
        "SourcePort": str(source_port),
        "SourceUser": source_user,
        "SourcePasswordSecretArn": src_secret,
        "TargetHost": target_host,
        "TargetPort": str(target_port),
        "TargetUser": target_user,
        "TargetPasswordSecretArn": tgt_secret,
        "WorkerImageTag": "pg15-test",
    }
    secrets = {"source": src_secret, "target": tgt_secret}
    if rehearsal:
        host, port, user, password = rehearsal
        secrets["rehearsal"] = (
            rehearsal_secret_arn
            or c["secretsmanager"].create_secret(
                Name="rds!cluster-aurora-rehearsal", SecretString=json.dumps({"username": user, "password": password})
            )["ARN"]
        )
        params.update(
            RehearsalTargetHost=host,
            RehearsalTargetPort=str(port),
            RehearsalTargetUser=user,
            RehearsalTargetPasswordSecretArn=secrets["rehearsal"],
        )
    cfn = c["cloudformation"]
    cfn.create_stack(
        StackName="pg-migration",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName="pg-migration")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    env = {
        o["Description"].split()[0]: o["OutputValue"]
        for o in stack["Outputs"]
        if o["Description"].startswith("PG_MIGRATION_ECS_")
    }
    # moto's CloudFormation registers the container definitions but drops the definition's
    # Fargate settings (network mode, compatibilities, cpu, roles); register them again as AWS would,
    # from the template's own values. (moto also wants a container memory; Fargate does not.)
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for r in cfn.list_stack_resources(StackName="pg-migration")["StackResourceSummaries"]
        if "LogicalResourceId" in r
    }
    role_arn = {n: c["iam"].get_role(RoleName=resources[n])["Role"]["Arn"] for n in ("ExecutionRole", "TaskRole")}
    families = [env["PG_MIGRATION_ECS_TASK_DEFINITION"]]
    if rehearsal:
        families.append(env["PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION"])
    for family in families:
        _register_as_fargate(c, family, role_arn)
    td = c["ecs"].describe_task_definition(taskDefinition=env["PG_MIGRATION_ECS_TASK_DEFINITION"])["taskDefinition"]
    return Stack(env=env, outputs=outputs, task_definition=td, secrets=secrets)


def _register_as_fargate(c: dict[str, Any], family: str, role_arn: dict[str, str]) -> None:
    registered = c["ecs"].describe_task_definition(taskDefinition=family)
    containers = registered["taskDefinition"]["containerDefinitions"]
    for cd in containers:
        cd["memory"] = 4096
    c["ecs"].register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="4096",
        executionRoleArn=role_arn["ExecutionRole"],
        taskRoleArn=role_arn["TaskRole"],
        runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        containerDefinitions=containers,
    )


def aws_conn(endpoint_url: str | None = None) -> str:
    extra: dict[str, Any] = {"region_name": REGION}
    if endpoint_url:
        extra["endpoint_url"] = endpoint_url
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


def _aws_env(mp: pytest.MonkeyPatch) -> None:
    """Credentials that can only reach moto; the AWS connection through the environment."""
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        mp.delenv(k, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_conn())


def _fake_connections(mp: pytest.MonkeyPatch) -> None:
    """Airflow connections with recognisable passwords (hosts nobody resolves: nothing connects)."""
    mp.setenv("AIRFLOW_CONN_PG_SOURCE", f"postgresql://postgres:{SOURCE_PW}@db.source.example:5432/warehouse")
    mp.setenv("AIRFLOW_CONN_PG_TARGET", f"postgresql://aurora_admin:{TARGET_PW}@aurora.cluster.example:5432/warehouse")


@pytest.fixture(scope="module")
def module_stack():
    """In-process moto with the stack deployed for the fake connections (once per module)."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp, mock_aws():
        _aws_env(mp)
        _fake_connections(mp)
        yield deploy_stack(
            clients(),
            "db.source.example",
            5432,
            "postgres",
            SOURCE_PW,
            "aurora.cluster.example",
            5432,
            "aurora_admin",
            TARGET_PW,
        )


@pytest.fixture
def stack(module_stack, monkeypatch):
    """The module's stack, with its outputs as PG_MIGRATION_ECS_* and the fake connections set."""
    _aws_env(monkeypatch)
    _fake_connections(monkeypatch)
    for k, v in module_stack.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PG_MIGRATION_ECS_POLL_SECONDS", "0")
    return module_stack


@pytest.fixture
def fargate(monkeypatch):
    """Install a FakeFargate (default program: the real worker); tests may replace ``.program``."""
    fake = FakeFargate(synchronous=True).install(monkeypatch)
    yield fake
    fake.wait(30)
    FakeFargate.kill_all()
    from moto.moto_api import state_manager

    state_manager.unset_transition("ecs::task")


# -- ThreadedMotoServer (for the deferrable trigger, which talks aiobotocore) ----------------------------


class RequestLog:
    """Every HTTP request the moto server received (target/path and body), for leak checks."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []

    def install(self, monkeypatch) -> RequestLog:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        log = self

        def call(app, environ, start_response):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            what = environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "")
            log.requests.append((what, body + environ.get("QUERY_STRING", "").encode()))
            return original(app, environ, start_response)

        monkeypatch.setattr(DomainDispatcherApplication, "__call__", call)
        return self

    def operations(self) -> list[str]:
        return [what for what, _ in self.requests]

    def bodies(self, operation: str) -> list[dict[str, Any]]:
        return [json.loads(body) for what, body in self.requests if what.endswith(operation) and body]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(monkeypatch):
    """A ThreadedMotoServer in this process (so FakeFargate's patches apply); yields its URL and log."""
    from moto.core.models import reset_model_data
    from moto.server import ThreadedMotoServer

    requests = RequestLog().install(monkeypatch)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        server.stop()
        reset_model_data()


__all__ = ["ACCOUNT", "REGION", "SOURCE_PW", "TARGET_PW", "Stack", "clients", "deploy_stack", "aws_conn"]
