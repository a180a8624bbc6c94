"""The benches' servers keep their connections open, as AWS and a real panel do (local.keepalive): a client
pays no connect per request there, so the benches charge the product no CPU AWS would not."""

from __future__ import annotations

import http.client
import json
import uuid

from local.solusvm_emulator import EmulatorServer
from local.stack import MotoServer

DYNAMODB = {
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0",
}


def _call(connection: http.client.HTTPConnection, target: str, body: dict, **headers: str) -> tuple:
    connection.request(
        "POST",
        "/",
        body=json.dumps(body).encode(),
        headers={**DYNAMODB, "X-Amz-Target": f"DynamoDB_20120810.{target}", **headers},
    )
    answer = connection.getresponse()
    return answer.status, answer.getheader("Connection"), json.loads(answer.read() or b"{}")


def test_moto_answers_requests_one_after_another_on_one_connection_errors_included():
    # (moto's backends are the process's: the stack's tables are listed too)
    server = MotoServer(keep_alive=True).start()
    try:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        table = {
            "TableName": f"kept-{uuid.uuid4().hex}",
            "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        assert _call(connection, "CreateTable", table)[0] == 200
        socket = connection.sock
        missing = _call(connection, "GetItem", {"TableName": "nope", "Key": {"k": {"S": "a"}}})
        assert missing[0] == 400 and "ResourceNotFound" in missing[2]["__type"]
        status, kept, answer = _call(connection, "ListTables", {"Limit": 100})
        assert (status, kept, table["TableName"] in answer["TableNames"]) == (200, None, True)
        assert connection.sock is socket, "one connection for every request"
        # a client that asks to close gets its connection closed, as HTTP/1.1 says
        assert _call(connection, "ListTables", {}, Connection="close")[0] == 200
        assert connection.sock is None or connection.sock is not socket
    finally:
        server.stop()


def test_a_chunked_request_is_answered_as_werkzeug_does_and_closes_its_connection():
    server = MotoServer(keep_alive=True).start()
    try:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request(
            "POST",
            "/",
            body=iter([b"{}"]),
            headers={**DYNAMODB, "X-Amz-Target": "DynamoDB_20120810.ListTables"},
            encode_chunked=True,
        )
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Connection")) == (200, "close")
        assert "TableNames" in json.loads(answer.read())
    finally:
        server.stop()


def test_the_emulator_keeps_its_connections_open_too():
    with EmulatorServer("kept-token", keep_alive=True) as emulator:
        host, port = emulator.root.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        sockets = set()
        for path, expected in (("/api/v1/users", 200), ("/api/v1/nowhere", 404), ("/api/v1/users", 200)):
            connection.request("GET", path, headers={"Authorization": "Bearer kept-token"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == expected, path
            sockets.add(id(connection.sock))
        assert len(sockets) == 1
