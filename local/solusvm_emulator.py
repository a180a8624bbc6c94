"""A SolusVM 2 emulator that speaks the API of shared/reference/solusvm-api.md over real HTTP.

Auth (Bearer token, 401), envelopes ({"data"} and list + links + meta), pagination by ?page=N,
201 on create, 204 on delete, 422 with {"message", "errors"} on validation, 404 on unknown ids,
``filter[search]`` as a substring search (not exact), servers with plans, the assumed usage contract,
one-time login tokens and a panel page that accepts them.

Test controls live under /_emulator (no auth): faults (an HTTP status, a hang, an answer lost after the
action), state, reset, and seeding servers. Run alone with ``python -m local.solusvm_emulator``.
"""

from __future__ import annotations

import argparse
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask, Response, jsonify, request
from markupsafe import escape
from werkzeug.serving import make_server

API = "/api/v1"
PLANS = [
    {"id": 1, "name": "Small", "tokens_per_hour": 7, "tokens_per_month": 5000},
    {"id": 2, "name": "Medium", "tokens_per_hour": 14, "tokens_per_month": 10000},
    {"id": 3, "name": "Large", "tokens_per_hour": 28, "tokens_per_month": 20000},
]


@dataclass
class Fault:
    # "status": answer with `status`; "hang": sleep `seconds` first; "after": act, then answer `status`;
    # "usage": a wrong usage answer: `change` replaces fields of its data, `remove` drops some, `server`
    # replaces fields of its first server, `duplicate` repeats its first server (the total is left as is)
    mode: str
    status: int = 503
    seconds: float = 30.0
    path: str = ""  # applies to API paths starting with this (after /api/v1/)
    method: str = ""
    count: int | None = None  # None: until cleared
    change: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False


@dataclass
class State:
    token: str
    per_page: int = 15
    auto_servers: int = 0
    users: dict[int, dict] = field(default_factory=dict)
    servers: dict[int, dict] = field(default_factory=dict)
    login_tokens: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    next_user: int = 1
    next_server: int = 100
    lock: threading.RLock = field(default_factory=threading.RLock)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def create_app(state: State) -> Flask:
    app = Flask("solusvm-emulator")

    def error(status: int, message: str, errors: dict | None = None) -> Response:
        body: dict[str, Any] = {"message": message}
        if errors:
            body["errors"] = errors
        response = jsonify(body)
        response.status_code = status
        return response

    def page(items: list[dict]) -> Response:
        try:
            number = max(1, int(request.args.get("page", "1")))
        except ValueError:
            number = 1
        total = len(items)
        last = max(1, math.ceil(total / state.per_page))
        chunk = items[(number - 1) * state.per_page : number * state.per_page]
        base = request.base_url
        query = "&".join(f"{k}={v}" for k, v in request.args.items() if k != "page")

        def link(n: int) -> str:
            return f"{base}?{query + '&' if query else ''}page={n}"

        return jsonify(
            {
                "data": chunk,
                "links": {
                    "first": link(1),
                    "last": link(last),
                    "prev": link(number - 1) if number > 1 else None,
                    "next": link(number + 1) if number < last else None,
                },
                "meta": {
                    "current_page": number,
                    "last_page": last,
                    "per_page": state.per_page,
                    "total": total,
                    "from": (number - 1) * state.per_page + 1 if chunk else None,
                    "to": (number - 1) * state.per_page + len(chunk) if chunk else None,
                    "path": base,
                },
            }
        )

    def public_user(user: dict) -> dict:
        return {k: v for k, v in user.items() if k != "password"}

    def public_server(server: dict) -> dict:
        return {
            **{k: v for k, v in server.items() if not k.startswith("_")},
            "created_at": _iso(server["_created"]),
        }

    def find_fault() -> Fault | None:
        path = request.path[len(API) + 1 :]
        with state.lock:
            for fault in state.faults:
                if path.startswith(fault.path) and (not fault.method or fault.method == request.method):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            state.faults.remove(fault)
                    return fault
        return None

    @app.before_request
    def gate() -> Response | None:
        if not request.path.startswith(API + "/"):
            return None
        with state.lock:
            state.log.append({"method": request.method, "path": request.path, "query": dict(request.args)})
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return error(401, "Unauthenticated.")
        fault = find_fault()
        if fault is None:
            return None
        if fault.mode == "hang":
            time.sleep(fault.seconds)
            return error(504, "Gateway Timeout")
        if fault.mode == "after":
            request.environ["emulator.after_status"] = fault.status
            return None
        if fault.mode == "usage":
            request.environ["emulator.usage_fault"] = fault
            return None
        if fault.status < 500:
            return error(fault.status, "Injected failure", {"email": ["Injected failure."]})
        return Response(
            "<html><body>Service Unavailable</body></html>", status=fault.status, content_type="text/html"
        )

    @app.after_request
    def lose_answer(response: Response) -> Response:
        status = request.environ.get("emulator.after_status")
        return error(status, "Server Error") if status else response

    # users ---------------------------------------------------------------------------------------------

    @app.get(f"{API}/account")
    def account() -> Response:
        return jsonify(
            {
                "data": {
                    "id": 0,
                    "email": "admin@solusvm.local",
                    "status": "active",
                    "roles": [{"id": 1, "name": "Admin"}],
                }
            }
        )

    @app.get(f"{API}/users")
    def list_users() -> Response:
        search = request.args.get("filter[search]", "").lower()
        with state.lock:
            users = [public_user(u) for u in state.users.values() if search in u["email"].lower()]
        return page(users)

    @app.post(f"{API}/users")
    def create_user() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error(400, "The request body must be JSON.")
        errors: dict[str, list[str]] = {}
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            errors["email"] = ["The email must be a valid email address."]
        if not isinstance(body.get("password"), str) or len(body["password"]) < 8:
            errors["password"] = ["The password must be at least 8 characters."]
        if body.get("status", "active") not in ("active", "locked", "suspended"):
            errors["status"] = ["The selected status is invalid."]
        for key in ("billing_user_id", "limit_group_id"):
            if key in body and not isinstance(body[key], int):
                errors[key] = [f"The {key.replace('_', ' ')} must be an integer."]
        with state.lock:
            if isinstance(email, str) and any(
                u["email"].lower() == email.lower() for u in state.users.values()
            ):
                errors["email"] = ["The email has already been taken."]
            if errors:
                return error(422, next(iter(errors.values()))[0], errors)
            user_id = state.next_user
            state.next_user += 1
            state.users[user_id] = {
                "id": user_id,
                "email": email,
                "password": body["password"],
                "status": body.get("status", "active"),
                "roles": [{"id": 2, "name": "Client"}],
                "billing_user_id": body.get("billing_user_id"),
                "limit_group_id": body.get("limit_group_id"),
                "created_at": _iso(_now()),
            }
            for index in range(state.auto_servers):
                add_server(state, user_id, PLANS[index % len(PLANS)], _now() - timedelta(days=120))
            user = public_user(state.users[user_id])
        response = jsonify({"data": user})
        response.status_code = 201
        return response

    @app.route(f"{API}/users/<int:user_id>", methods=["GET", "PUT", "PATCH", "DELETE"])
    def one_user(user_id: int) -> Response:
        with state.lock:
            user = state.users.get(user_id)
            if user is None:
                return error(404, "Not found.")
            if request.method == "GET":
                return jsonify({"data": public_user(user)})
            if request.method == "DELETE":
                if any(s["user_id"] == user_id and not s["_deleted"] for s in state.servers.values()):
                    return error(422, "The user has servers.")
                del state.users[user_id]
                return Response(status=204)
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return error(400, "The request body must be JSON.")
            allowed = {
                "PUT": {"status", "password", "roles", "language_id", "billing_user_id"},
                "PATCH": {"email", "status"},
            }[request.method]
            if "status" in body and body["status"] not in ("active", "locked", "suspended"):
                return error(
                    422, "The selected status is invalid.", {"status": ["The selected status is invalid."]}
                )
            if "billing_user_id" in body and not isinstance(body["billing_user_id"], int):
                return error(422, "The billing user id must be an integer.")
            for key, value in body.items():
                if key in allowed:
                    user[key] = value
            return jsonify({"data": public_user(user)})

    @app.post(f"{API}/users/<int:user_id>/tokens")
    def login_token(user_id: int) -> Response:
        body = request.get_json(silent=True) or {}
        with state.lock:
            if user_id not in state.users:
                return error(404, "Not found.")
            token = secrets.token_urlsafe(32)
            state.login_tokens[token] = user_id
        response = jsonify({"data": {"access_token": token, "is_one_time": bool(body.get("is_one_time"))}})
        response.status_code = 201
        return response

    # servers and usage ---------------------------------------------------------------------------------

    @app.get(f"{API}/servers")
    def list_servers() -> Response:
        wanted = request.args.get("filter[user_id]")
        with state.lock:
            servers = [
                public_server(s)
                for s in state.servers.values()
                if not s["_deleted"] and (wanted is None or str(s["user_id"]) == wanted)
            ]
        return page(servers)

    @app.get(f"{API}/users/<int:user_id>/usage")
    def usage(user_id: int) -> Response:
        try:
            start = date.fromisoformat(request.args["filter[date_from]"])
            end = date.fromisoformat(request.args["filter[date_to]"])
        except (KeyError, ValueError):
            return error(422, "date_from and date_to are required dates.")
        with state.lock:
            if user_id not in state.users:
                return error(404, "Not found.")
            lines = [usage_line(s, start, end) for s in state.servers.values() if s["user_id"] == user_id]
        lines = [line for line in lines if line["hours"] > 0]
        data = {
            "user_id": user_id,
            "date_from": start.isoformat(),
            "date_to": end.isoformat(),
            "total_tokens": sum(line["tokens"] for line in lines),
            "servers": lines,
        }
        wrong: Fault | None = request.environ.get("emulator.usage_fault")
        if wrong is not None:
            data = wrong_usage(data, wrong)
        return jsonify({"data": data})

    # the control panel's SSO landing page --------------------------------------------------------------

    @app.get("/panel/login")
    def panel_login() -> Response:
        token = request.args.get("token", "")
        with state.lock:
            user_id = state.login_tokens.pop(token, None)
            user = state.users.get(user_id) if user_id is not None else None
        if user is None:
            return Response(
                "<h1>Login link invalid or already used</h1>", status=401, content_type="text/html"
            )
        html = (
            f"<!doctype html><title>SolusVM</title><h1>SolusVM control panel</h1>"
            f"<p id='who'>Logged in as {escape(user['email'])}</p>"
        )
        return Response(html, content_type="text/html")

    # test controls ---------------------------------------------------------------------------------------

    @app.post("/_emulator/faults")
    def add_fault() -> Response:
        body = request.get_json(force=True)
        with state.lock:
            state.faults.append(Fault(**body))
        return jsonify({"faults": len(state.faults)})

    @app.delete("/_emulator/faults")
    def clear_faults() -> Response:
        with state.lock:
            state.faults.clear()
        return Response(status=204)

    @app.post("/_emulator/servers")
    def seed_server() -> Response:
        body = request.get_json(force=True)
        with state.lock:
            plan = next(p for p in PLANS if p["id"] == body.get("plan_id", 1))
            server = add_server(
                state,
                int(body["user_id"]),
                plan,
                datetime.fromisoformat(body["created_at"]),
                deleted=datetime.fromisoformat(body["deleted_at"]) if body.get("deleted_at") else None,
                name=body.get("name"),
            )
        return jsonify({"data": public_server(server)})

    @app.post("/_emulator/seed")
    def seed() -> Response:
        """Bulk test data: users, each with email, billing_user_id and servers (plan_id, created_at)."""
        body = request.get_json(force=True)
        ids = []
        with state.lock:
            for spec in body["users"]:
                user_id = state.next_user
                state.next_user += 1
                state.users[user_id] = {
                    "id": user_id,
                    "email": spec["email"],
                    "password": "seeded-password",
                    "status": "active",
                    "roles": [{"id": 2, "name": "Client"}],
                    "billing_user_id": spec.get("billing_user_id"),
                    "limit_group_id": None,
                    "created_at": _iso(_now()),
                }
                for server in spec.get("servers", []):
                    plan = next(p for p in PLANS if p["id"] == server.get("plan_id", 1))
                    add_server(state, user_id, plan, datetime.fromisoformat(server["created_at"]))
                ids.append(user_id)
        return jsonify({"ids": ids})

    @app.get("/_emulator/state")
    def dump() -> Response:
        with state.lock:
            return jsonify(
                {
                    "users": [public_user(u) for u in state.users.values()],
                    "servers": [public_server(s) for s in state.servers.values()],
                    "requests": list(state.log),
                }
            )

    @app.post("/_emulator/reset")
    def reset() -> Response:
        with state.lock:
            state.users.clear()
            state.servers.clear()
            state.login_tokens.clear()
            state.faults.clear()
            state.log.clear()
        return Response(status=204)

    return app


def add_server(
    state: State,
    user_id: int,
    plan: dict,
    created: datetime,
    *,
    deleted: datetime | None = None,
    name: str | None = None,
) -> dict:
    server_id = state.next_server
    state.next_server += 1
    server = {
        "id": server_id,
        "uuid": f"00000000-0000-4000-8000-{server_id:012d}",
        "name": name or f"server-{server_id}",
        "status": "running",
        "plan": dict(plan),
        "is_suspended": False,
        "user_id": user_id,
        "_created": created.astimezone(UTC),
        "_deleted": deleted is not None,
        "_deleted_at": deleted.astimezone(UTC) if deleted else None,
    }
    state.servers[server_id] = server
    return server


def wrong_usage(data: dict, fault: Fault) -> dict:
    """The answer a proxy, a cache or a SolusVM bug could give instead: see Fault."""
    servers = [dict(s) for s in data["servers"]]
    if servers and fault.server:
        servers[0].update(fault.server)
    if servers and fault.duplicate:
        servers.append(dict(servers[0]))
    wrong = {**data, "servers": servers, **fault.change}
    return {k: v for k, v in wrong.items() if k not in fault.remove}


def usage_line(server: dict, start: date, end: date) -> dict:
    """Uptime in the inclusive UTC date range: started hours count whole, capped by the plan per month."""
    window_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    window_end = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    up_from = max(window_start, server["_created"])
    up_to = min(window_end, server["_deleted_at"] or _now(), window_end)
    seconds = max(0.0, (up_to - up_from).total_seconds())
    hours = math.ceil(seconds / 3600)
    plan = server["plan"]
    tokens = min(hours * plan["tokens_per_hour"], plan["tokens_per_month"])
    return {
        "id": server["id"],
        "uuid": server["uuid"],
        "name": server["name"],
        "is_deleted": server["_deleted"],
        "plan": dict(plan),
        "hours": hours,
        "tokens": tokens,
    }


class EmulatorServer:
    """The emulator on a thread: ``with EmulatorServer(token) as emu: emu.url``."""

    def __init__(
        self,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        per_page: int = 15,
        auto_servers: int = 0,
        keep_alive: bool = False,
    ) -> None:
        """``keep_alive``: connections stay open between requests (local.keepalive), as a real panel's do;
        werkzeug's own handler closes each one after its answer."""
        self.state = State(token=token, per_page=per_page, auto_servers=auto_servers)
        handler = None
        if keep_alive:
            from local.keepalive import keep_alive as keeping

            handler = keeping()
        self._server = make_server(host, port, create_app(self.state), threaded=True, request_handler=handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"{self.root}/api/v1/"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="local-solusvm-token")
    parser.add_argument("--auto-servers", type=int, default=3)
    parser.add_argument(
        "--keep-alive", action="store_true", help="keep connections open between requests (the benches)"
    )
    args = parser.parse_args()
    server = EmulatorServer(
        args.token, port=args.port, auto_servers=args.auto_servers, keep_alive=args.keep_alive
    ).start()
    print(f"SolusVM emulator on {server.url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
