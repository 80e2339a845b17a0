#!/usr/bin/env python3
"""Cross-checks deploy/ and docker-compose.yml against the Rust sources they must agree with.

No Docker engine is needed: this reads files only. Run by deploy/validate.sh (which also
runs the schema and config validators); exits non-zero listing every disagreement.

Checks:
  * deploy/postgres/init.sql creates exactly the roles and databases of
    crates/stack/src/catalog.rs (SERVICE_DATABASES), revokes CONNECT from PUBLIC on
    `postgres` and on each database, and is the file the local stack runs.
  * deploy/kafka/create-topics.sh and crates/stack/src/catalog.rs (TOPICS) name exactly the
    topics of saga_contracts::topics; create-topics.sh creates them with
    saga_kafka::DEFAULT_PARTITIONS, and compose's kafka-init asks for that count.
  * every docker-compose service built from deploy/Dockerfile names an existing target, the
    Dockerfile copies each package's real binary name (Cargo.toml), and the HTTP port of
    APP_HTTP__LISTEN matches the Dockerfile's EXPOSE, the healthcheck, the published port
    and Prometheus' scrape target.
  * every APP_* variable given to a service names a top-level field of that service's
    Config struct (several Configs deny unknown fields: a stray key would stop the service),
    and every service gets the keys it requires (database.url, registry.url); a service given
    any APP_CONSUMER__* key also gets APP_CONSUMER__GROUP_ID.
  * every metric a Grafana query uses is exported by the code (a metrics::counter!/gauge!/
    histogram! call; histograms also as _sum/_count), every label matcher value appears in
    the code, and the dashboard's datasource uid is the provisioned one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


# ---------------------------------------------------------------- Postgres roles and databases
def check_postgres() -> None:
    catalog = read("crates/stack/src/catalog.rs")
    dbs = re.findall(r'service_db!\("([^"]+)",\s*"([^"]+)",\s*"([^"]+)"\)', catalog)
    if not dbs:
        err("catalog.rs: no service_db! entries found (did the catalogue change shape?)")
        return
    expected = ["REVOKE CONNECT ON DATABASE postgres FROM PUBLIC"]
    for _component, db, role in dbs:
        # No password in the file: set afterwards from a secret (passwords.sh, the stack).
        expected += [
            f"CREATE ROLE {role} LOGIN",
            f"CREATE DATABASE {db} OWNER {role}",
            f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC",
            f"GRANT CONNECT ON DATABASE {db} TO {role}",
        ]
    sql = "\n".join(
        line for line in read("deploy/postgres/init.sql").splitlines() if not line.strip().startswith("--")
    )
    actual = [" ".join(s.split()) for s in sql.split(";") if s.strip()]
    if actual != expected:
        missing = [s for s in expected if s not in actual]
        extra = [s for s in actual if s not in expected]
        err(
            "deploy/postgres/init.sql differs from crates/stack/src/catalog.rs: "
            f"missing {missing}, unexpected {extra}"
            + ("" if missing or extra else " (order differs)")
        )
    # docker-compose sets every role's password from the environment after init.sql.
    script = read("deploy/postgres/passwords.sh")
    in_script = dict(re.findall(r"\[(\w+)\]=\"\$\{(SAGA_DB_PASSWORD_\w+):\?\}\"", script))
    roles = {role for _c, _db, role in dbs}
    if set(in_script) != roles:
        err(f"deploy/postgres/passwords.sh sets {sorted(in_script)}, the catalogue has {sorted(roles)}")
    # The local stack runs this very file (one source for both).
    if 'include_str!("../../../deploy/postgres/init.sql")' not in read("crates/stack/src/postgres.rs"):
        err("crates/stack/src/postgres.rs no longer runs deploy/postgres/init.sql")


# ---------------------------------------------------------------------------------- topics
def check_topics(compose: dict) -> None:
    lib = read("crates/contracts/src/lib.rs")
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', lib))
    all_block = re.search(r"pub const ALL: \[&str; \d+\] = \[(.*?)\];", lib, re.S)
    if not all_block:
        err("crates/contracts/src/lib.rs: topics::ALL not found")
        return
    names = [consts[c] for c in re.findall(r"([A-Z_]+)", all_block.group(1)) if c in consts]
    expected = names + [consts["DEAD_LETTERS"]]
    script = read("deploy/kafka/create-topics.sh")
    block = re.search(r"TOPICS=\((.*?)\)", script, re.S)
    listed = block.group(1).split() if block else []
    if sorted(listed) != sorted(expected):
        err(f"create-topics.sh lists {listed}, the contracts define {expected}")
    # The local stack spells the same names out (it does not link the contracts crate).
    stack = re.findall(r'topic\("([^"]+)"\)', read("crates/stack/src/catalog.rs"))
    if stack != expected:
        err(f"crates/stack/src/catalog.rs TOPICS lists {stack}, the contracts define {expected}")
    partitions = re.search(r"pub const DEFAULT_PARTITIONS: i32 = (\d+);", read("crates/kafka/src/lib.rs"))
    default = re.search(r'PARTITIONS="\$\{PARTITIONS:-(\d+)\}"', script)
    env = compose["services"]["kafka-init"].get("environment", {})
    if not partitions or not default or partitions.group(1) != default.group(1):
        err("create-topics.sh default partition count differs from saga_kafka::DEFAULT_PARTITIONS")
    elif str(env.get("PARTITIONS")) != partitions.group(1):
        err(f"kafka-init PARTITIONS={env.get('PARTITIONS')}, DEFAULT_PARTITIONS={partitions.group(1)}")


# ----------------------------------------------------------------- images, ports, config keys
# compose service -> (package directory, Dockerfile target)
SERVICES = {
    "schema-registry": ("services/schema-registry", "schema-registry"),
    "order": ("services/order", "order"),
    "inventory": ("services/inventory", "inventory"),
    "payment": ("services/payment", "payment"),
    "shipping": ("services/shipping", "shipping"),
    "orchestrator": ("services/orchestrator", "orchestrator"),
}


def bin_name(pkg_dir: str) -> str:
    toml = read(f"{pkg_dir}/Cargo.toml")
    m = re.search(r'\[\[bin\]\]\s*\nname = "([^"]+)"', toml)
    if m:
        return m.group(1)
    return re.search(r'^name = "([^"]+)"', toml, re.M).group(1)


# Where config structs that services flatten into their own live.
SHARED_CONFIG_SOURCES = ["crates/runtime/src/config.rs"]


def struct_fields(sources: list[str], name: str) -> tuple[set[str], set[str]] | None:
    """Top-level serde keys of `pub struct <name>` (or `pub type <name> = Other<..>`) in
    `sources`, and the ones without a serde default. `#[serde(flatten)]` fields contribute
    their struct's keys instead of their own name; `#[serde(skip)]` fields none."""
    for rel in sources:
        src = read(rel)
        alias = re.search(rf"pub type {name}\s*=\s*(\w+)\s*[<;]", src)
        if alias:
            return struct_fields(sources, alias.group(1))
        m = re.search(rf"pub struct {name}(?:<[^>]*>)? \{{(.*?)\n\}}", src, re.S)
        if not m:
            continue
        fields, required = set(), set()
        attrs: list[str] = []
        for line in m.group(1).splitlines():
            line = line.strip()
            if line.startswith("#[serde("):
                attrs.append(line)
                continue
            fm = re.match(r"pub (\w+):\s*([\w:]+)", line)
            if not fm:
                continue
            field, ty = fm.group(1), fm.group(2).split("::")[-1]
            flatten = any("flatten" in a for a in attrs)
            skip = any(re.search(r"\bskip\b", a) for a in attrs)
            default = any("default" in a for a in attrs)
            attrs = []
            if skip:
                continue
            if flatten:
                inner = struct_fields(sources, ty)
                if inner is None:
                    err(f"{rel}: flattened {ty} of {name} not found")
                    continue
                fields |= inner[0]
                required |= inner[1]
                continue
            fields.add(field)
            if not default:
                required.add(field)
        return fields, required
    return None


def config_fields(pkg_dir: str) -> tuple[set[str], set[str]]:
    """Top-level keys of the service's `Config` and the ones without a serde default."""
    found = struct_fields([f"{pkg_dir}/src/lib.rs", *SHARED_CONFIG_SOURCES], "Config")
    if found is None:
        err(f"{pkg_dir}/src/lib.rs: pub struct Config not found")
        return set(), set()
    return found


def dockerfile_targets() -> dict[str, str]:
    """target -> the stage's text."""
    text = read("deploy/Dockerfile")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    out = {}
    for stage in stages:
        m = re.match(r"\S+ AS (\S+)", stage)
        if m:
            out[m.group(1)] = stage
    return out


def check_services(compose: dict, prometheus: dict) -> None:
    targets = dockerfile_targets()
    scrape = {
        t
        for job in prometheus["scrape_configs"]
        if job["job_name"] == "saga-services"
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    for name, (pkg_dir, target) in SERVICES.items():
        svc = compose["services"].get(name)
        if svc is None:
            err(f"docker-compose.yml: service {name} missing")
            continue
        build = svc.get("build", {})
        if build.get("dockerfile") != "deploy/Dockerfile" or build.get("target") != target:
            err(f"{name}: build should be deploy/Dockerfile target {target}, is {build}")
        stage = targets.get(target)
        if stage is None:
            err(f"deploy/Dockerfile has no target {target}")
            continue
        binary = bin_name(pkg_dir)
        if f"/out/{binary} " not in stage or f'ENTRYPOINT ["/usr/local/bin/{binary}"]' not in stage:
            err(f"Dockerfile target {target} does not copy and run binary {binary}")
        if f"target/release/{binary}" not in targets["builder"]:
            err(f"Dockerfile builder does not copy target/release/{binary}")
        env = svc.get("environment", {})
        listen = env.get("APP_HTTP__LISTEN", "")
        port = listen.rsplit(":", 1)[-1]
        if not listen.startswith("0.0.0.0:"):
            err(f"{name}: APP_HTTP__LISTEN={listen!r} must listen on 0.0.0.0 in a container")
        if f"EXPOSE {port}" not in stage or f"APP_HTTP__LISTEN=0.0.0.0:{port}" not in stage:
            err(f"{name}: Dockerfile target {target} does not expose/listen on {port}")
        health = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f"127.0.0.1:{port}/healthz" not in health:
            err(f"{name}: healthcheck does not probe /healthz on {port}: {health}")
        if f"127.0.0.1:{port}:{port}" not in svc.get("ports", []):
            err(f"{name}: port {port} not published on 127.0.0.1:{port}")
        if f"{name}:{port}" not in scrape:
            err(f"prometheus.yml does not scrape {name}:{port}")
        fields, required = config_fields(pkg_dir)
        keys = set()
        for var in env:
            if not var.startswith("APP_"):
                continue
            top = var[len("APP_"):].split("__")[0].lower()
            keys.add(top)
            if top not in fields:
                err(f"{name}: {var} sets `{top}`, not a field of {pkg_dir} Config {sorted(fields)}")
        # A partial `consumer` table drops the serde default of the whole table, group id
        # included (the participants then refuse to start with an empty group id).
        if any(v.startswith("APP_CONSUMER__") for v in env) and "APP_CONSUMER__GROUP_ID" not in env:
            err(f"{name}: sets APP_CONSUMER__* without APP_CONSUMER__GROUP_ID")
        for field in required - keys:
            err(f"{name}: required config `{field}` is not set (APP_{field.upper()}__...)")
        db_url = env.get("APP_DATABASE__URL", "")
        if name != "schema-registry" and "schema-registry:18081" not in env.get("APP_REGISTRY__URL", ""):
            err(f"{name}: APP_REGISTRY__URL does not point at schema-registry:18081")
        m = re.match(r"postgres://(\w+):\$\{(SAGA_DB_PASSWORD_\w+):-[\w-]+\}@postgres:5432/(\w+)$", db_url)
        if not m:
            err(f"{name}: unexpected APP_DATABASE__URL {db_url!r} (role:${{SAGA_DB_PASSWORD_X:-default}}@postgres:5432/db)")
        else:
            role, variable, db = m.groups()
            catalog = read("crates/stack/src/catalog.rs")
            if not re.search(rf'service_db!\("[^"]+",\s*"{db}",\s*"{role}"\)', catalog):
                err(f"{name}: {role}@{db} is not a role/database pair of the catalogue")
            script = dict(re.findall(r"\[(\w+)\]=\"\$\{(SAGA_DB_PASSWORD_\w+):\?\}\"", read("deploy/postgres/passwords.sh")))
            pg_env = compose["services"]["postgres"].get("environment", {})
            if script.get(role) != variable or variable not in pg_env:
                err(f"{name}: {variable} is not the password variable of {role} in passwords.sh and the postgres service")


# ------------------------------------------------------------------------------ dashboards
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate",
    "histogram_quantile", "topk", "bottomk", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "clamp_min", "clamp_max", "abs", "time",
}
# Series Prometheus itself attaches to every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exported_metrics() -> tuple[dict[str, str], str]:
    """metric name -> kind, and the concatenated Rust sources (for label values)."""
    sources = ""
    metrics: dict[str, str] = {}
    for path in list(ROOT.glob("crates/*/src/**/*.rs")) + list(ROOT.glob("services/*/src/**/*.rs")):
        text = path.read_text()
        sources += text
        for kind, name in re.findall(r'metrics::(counter|gauge|histogram)!\(\s*"([a-z_:][a-z0-9_:]*)"', text):
            metrics[name] = kind
    return metrics, sources


def metric_names(expr: str) -> tuple[set[str], list[tuple[str, str]]]:
    matchers = re.findall(r'(\w+)\s*=~?\s*"([^"]*)"', expr)
    stripped = re.sub(r"\{[^}]*\}", " ", expr)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", stripped)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
        word = m.group(0)
        rest = stripped[m.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        names.add(word)
    return names, matchers


def check_dashboards() -> None:
    metrics, sources = exported_metrics()
    ds = yaml.safe_load(read("deploy/grafana/provisioning/datasources/prometheus.yml"))
    uids = {d["uid"] for d in ds["datasources"]}
    for path in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
        rel = path.relative_to(ROOT)
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            err(f"{rel}: invalid JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dash:
                err(f"{rel}: missing `{key}`")
        ids = [p["id"] for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            err(f"{rel}: duplicate panel ids")
        for panel in dash.get("panels", []):
            if panel.get("type") == "row":
                continue
            if panel.get("datasource", {}).get("uid") not in uids:
                err(f"{rel}: panel {panel['title']!r} uses a datasource that is not provisioned")
            if not panel.get("targets"):
                err(f"{rel}: panel {panel['title']!r} has no query")
            for target in panel.get("targets", []):
                names, matchers = metric_names(target["expr"])
                for name in names:
                    base = re.sub(r"_(sum|count)$", "", name)
                    if name in PROMETHEUS_SERIES:
                        continue
                    if name in metrics:
                        continue
                    if base != name and metrics.get(base) == "histogram":
                        continue
                    err(f"{rel}: panel {panel['title']!r} queries {name}, which no code exports")
                for label, value in matchers:
                    if label in ("job", "quantile"):
                        continue
                    if f'"{value}"' not in sources:
                        err(f"{rel}: panel {panel['title']!r} matches {label}={value!r}, a value the code never uses")
    for name in ("kafka_consumer_lag", "consumer_messages_total", "outbox_pending_messages",
                 "outbox_oldest_pending_age_seconds", "sagas", "saga_duration_seconds"):
        used = any(name in p.read_text() for p in (ROOT / "deploy/grafana/dashboards").glob("*.json"))
        if not used:
            err(f"no dashboard shows {name}")
        if name not in metrics:
            err(f"the code no longer exports {name}")


def main() -> int:
    compose = yaml.safe_load(read("docker-compose.yml"))
    prometheus = yaml.safe_load(read("deploy/prometheus/prometheus.yml"))
    check_postgres()
    check_topics(compose)
    check_services(compose, prometheus)
    check_dashboards()
    for e in errors:
        print(f"FAIL {e}")
    print(f"check_sources: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
