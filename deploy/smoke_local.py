#!/usr/bin/env python3
"""Runs the docker-compose configuration without Docker and plays the demo against it.

What it proves on a machine with no Docker engine:
  * deploy/postgres/init.sql runs on a fresh PostgreSQL 15 cluster the way the postgres
    image's entrypoint runs it (psql, ON_ERROR_STOP, autocommit) and isolates the roles;
  * the environment docker-compose.yml gives each service (APP_* keys, database URLs, roles)
    is accepted by the real binaries, which then become healthy;
  * deploy/demo/demo.sh drives every saga path to its expected end.

Differences from compose, on purpose: hosts and ports are rewritten to free loopback ports;
the broker is tansu (memory storage), not Apache Kafka (none can run here), and its topics are
created with `tansu topic create` from the list in deploy/kafka/create-topics.sh.

Usage: deploy/smoke_local.py  (binaries from $CARGO_TARGET_DIR/debug: build them first with
`cargo build -p schema-registry -p order-service -p inventory-service -p payment-service
-p shipping-service -p orchestrator-service`). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("SAGA_PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
TANSU = Path(
    os.environ.get(
        "SAGA_TANSU_BIN", Path.home() / ".cache/saga-suite/tansu-0.6.0/bin/tansu"
    )
)
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
SUPERUSER_PASSWORD = "postgres"
# compose service -> binary, in start order (the registry first: services register schemas).
SERVICES = [
    ("schema-registry", "schema-registry"),
    ("order", "order-service"),
    ("inventory", "inventory-service"),
    ("payment", "payment-service"),
    ("shipping", "shipping-service"),
    ("orchestrator", "orchestrator-service"),
]
DEADLINE = 60.0
# Series that must exist once the demo ran (the dashboard's core panels).
DASHBOARD_SERIES = [
    "kafka_consumer_lag", "consumer_messages_total", "consumer_batch_size",
    "outbox_pending_messages", "outbox_oldest_pending_age_seconds", "outbox_published_total",
    "outbox_commit_to_publish_seconds", "sagas", "sagas_started_total", "saga_duration_seconds",
    "saga_compensations_total", "inventory_commands_total", "payment_commands_total",
    "shipping_commands_total",
]

procs: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: not ready within {deadline:.0f}s")
        time.sleep(0.2)


def as_postgres_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package provides the `postgres` user.
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def psql(port: int, user: str, password: str, db: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="3")
    return subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(port), "-U", user, "-d", db, *args],
        env=env, capture_output=True, text=True,
    )


def start_postgres(work: Path) -> int:
    port = free_port()
    cluster = work / "pg"
    pwfile = work / "pwfile"
    pwfile.write_text(SUPERUSER_PASSWORD)
    if os.geteuid() == 0:
        os.chmod(work, 0o755)
        cluster.mkdir()
        shutil.chown(cluster, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        as_postgres_user([str(PG_BIN / "initdb"), "-D", str(cluster), "-U", "postgres", "-E", "UTF8",
                          "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                          f"--pwfile={pwfile}"]),
        check=True, capture_output=True,
    )
    log = open(work / "postgres.log", "w")
    procs.append(subprocess.Popen(
        as_postgres_user([str(PG_BIN / "postgres"), "-D", str(cluster), "-p", str(port),
                          "-h", "127.0.0.1", "-c", "unix_socket_directories=",
                          "-c", "max_connections=300"]),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    ))
    wait_until("postgres", lambda: psql(port, "postgres", SUPERUSER_PASSWORD, "postgres",
                                        "-c", "SELECT 1").returncode == 0)
    return port


def apply_init_sql(port: int) -> None:
    r = psql(port, "postgres", SUPERUSER_PASSWORD, "postgres", "-f",
             str(ROOT / "deploy/postgres/init.sql"))
    if r.returncode != 0:
        raise RuntimeError(f"init.sql failed: {r.stderr}")
    # Then the passwords, as the image's entrypoint runs passwords.sh after init.sql, with
    # the postgres service's compose environment (the documented dev defaults).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    pg_env = {k: expand(str(v)) for k, v in compose["services"]["postgres"]["environment"].items()}
    r = subprocess.run(
        ["bash", str(ROOT / "deploy/postgres/passwords.sh")],
        env={**os.environ, **pg_env, "PGHOST": "127.0.0.1", "PGPORT": str(port),
             "PGPASSWORD": SUPERUSER_PASSWORD, "POSTGRES_USER": "postgres"},
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"passwords.sh failed: {r.stderr}")
    password = {
        "order_svc": pg_env["SAGA_DB_PASSWORD_ORDER"],
        "registry_svc": pg_env["SAGA_DB_PASSWORD_REGISTRY"],
    }
    # Each role reaches its own database with its own password, and nothing else.
    checks = [
        ("order_svc", password["order_svc"], "order_db", True),
        ("order_svc", password["order_svc"], "payment_db", False),
        ("order_svc", password["order_svc"], "postgres", False),
        ("order_svc", "order_svc", "order_db", False),
        ("order_svc", password["registry_svc"], "order_db", False),
        ("registry_svc", password["registry_svc"], "registry_db", True),
        ("registry_svc", password["registry_svc"], "orchestrator_db", False),
    ]
    for role, pw, db, allowed in checks:
        ok = psql(port, role, pw, db, "-c", "SELECT 1").returncode == 0
        if ok != allowed:
            raise RuntimeError(f"{role} on {db}: {'allowed' if ok else 'refused'}, expected the opposite")
    print("init.sql + passwords.sh: roles and databases created; each role logs in with its own "
          "password only and is refused on the others' databases")


def expand(value: str) -> str:
    """docker compose's `${VAR:-default}` interpolation."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), value)


def start_broker(work: Path) -> int:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(work / "tansu.log", "w")
    procs.append(subprocess.Popen(
        [str(TANSU), "broker", "--cluster-id", "smoke", "--listener-url", url,
         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
    ))
    wait_until("broker", lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None)
    script = (ROOT / "deploy/kafka/create-topics.sh").read_text()
    topics = re.search(r"TOPICS=\((.*?)\)", script, re.S).group(1).split()
    partitions = re.search(r'PARTITIONS="\$\{PARTITIONS:-(\d+)\}"', script).group(1)
    for topic in topics:
        subprocess.run([str(TANSU), "topic", "create", topic, "--broker", url,
                        "--partitions", partitions], check=True, capture_output=True)
    print(f"broker: tansu on {port}, {len(topics)} topics x {partitions} partitions")
    return port


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return r.status == 200


def start_services(work: Path, pg: int, kafka: int) -> dict[str, int]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports: dict[str, int] = {}
    registry_port = None
    for name, binary in SERVICES:
        env = {k: expand(str(v)) for k, v in compose["services"][name]["environment"].items()}
        port = free_port()
        ports[name] = port
        if name == "schema-registry":
            registry_port = port
        rewritten = {}
        for key, value in env.items():
            value = value.replace("@postgres:5432/", f"@127.0.0.1:{pg}/")
            value = value.replace("kafka:9092", f"127.0.0.1:{kafka}")
            value = value.replace("http://schema-registry:18081", f"http://127.0.0.1:{registry_port}")
            if key == "APP_HTTP__LISTEN":
                value = f"127.0.0.1:{port}"
            rewritten[key] = value
        log = open(work / f"{name}.log", "w")
        bin_path = TARGET / binary
        if not bin_path.exists():
            raise RuntimeError(f"{bin_path} is not built")
        procs.append(subprocess.Popen(
            [str(bin_path)], env={**{k: v for k, v in os.environ.items() if not k.startswith("APP_")},
                                  **rewritten},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
        ))
        try:
            wait_until(f"{name} /healthz", lambda: healthy(port))
        except RuntimeError:
            # The head of the log holds the error; a panic's backtrace follows it.
            print("\n".join((work / f"{name}.log").read_text().splitlines()[:25]), file=sys.stderr)
            raise
        print(f"{name}: healthy on {port} with the compose environment")
    return ports


def stop_all() -> None:
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT if "postgres" in str(p.args) else signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in reversed(procs):
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="saga-deploy-smoke-"))
    keep = False
    try:
        pg = start_postgres(work)
        apply_init_sql(pg)
        kafka = start_broker(work)
        ports = start_services(work, pg, kafka)
        env = dict(
            os.environ,
            ORDER_URL=f"http://127.0.0.1:{ports['order']}",
            INVENTORY_URL=f"http://127.0.0.1:{ports['inventory']}",
            PAYMENT_URL=f"http://127.0.0.1:{ports['payment']}",
            SHIPPING_URL=f"http://127.0.0.1:{ports['shipping']}",
            ORCHESTRATOR_URL=f"http://127.0.0.1:{ports['orchestrator']}",
        )
        started = time.monotonic()
        r = subprocess.run(["bash", str(ROOT / "deploy/demo/demo.sh")], env=env)
        print(f"demo took {time.monotonic() - started:.1f}s")
        if r.returncode != 0:
            keep = True
            print(f"demo failed; logs kept in {work}", file=sys.stderr)
            return 1
        # The series the dashboard is built on must now be on the services' /metrics.
        scraped = ""
        for port in ports.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                scraped += resp.read().decode()
        missing = [m for m in DASHBOARD_SERIES if not re.search(rf"^{m}[{{ ]", scraped, re.M)]
        if missing:
            keep = True
            print(f"metrics missing after the demo: {missing}", file=sys.stderr)
            return 1
        print(f"metrics: all of {', '.join(DASHBOARD_SERIES)} exported")
        print("smoke test passed")
        return 0
    except Exception:
        keep = True
        print(f"logs kept in {work}", file=sys.stderr)
        raise
    finally:
        stop_all()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
