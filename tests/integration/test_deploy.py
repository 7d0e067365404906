"""Deployment files, checked without a container engine: parsed, cross-checked, and run through the
real validators (promtool, amtool, systemd-analyze, kustomize build), which `make test` installs."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.generate import JSON_DIR, RULES_DIR
from tests.support.procs import REPO, kustomize, promtool, require

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(DEPLOY / "docker-compose.yml")


def _host_port(url_or_target: str) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url_or_target if "//" in url_or_target else f"//{url_or_target}")
    assert parsed.hostname and parsed.port, url_or_target
    return parsed.hostname, parsed.port


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    assert {"exporter", "prometheus", "alertmanager", "grafana", "otel-collector", "jaeger"} <= set(compose["services"])


def test_compose_mounts_and_build_reference_existing_files(compose: dict[str, Any]) -> None:
    checked = 0
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
                checked += 1
        if "build" in svc:
            context = DEPLOY / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).is_file()
    assert checked >= 7


def _mount_target(svc: dict[str, Any], source: str) -> str:
    for volume in svc["volumes"]:
        parts = volume.split(":")
        if parts[0] == source:
            return parts[1]
    raise AssertionError(f"{source} is not mounted")


def test_compose_services_point_at_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    exporter_cmd = services["exporter"]["command"]
    assert exporter_cmd[exporter_cmd.index("--web.listen-address") + 1] == "0.0.0.0:9797"
    assert "--target" in exporter_cmd
    prom_cfg = load(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in prom_cfg["scrape_configs"] if j["job_name"] == "libp2p-exporter")
    assert _host_port(job["static_configs"][0]["targets"][0]) == ("exporter", 9797)
    am_host, am_port = _host_port(prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0])
    assert am_host in services and am_port == 9093
    assert "--cluster.listen-address=" in services["alertmanager"]["command"]
    # Prometheus loads exactly the rule files of deploy/prometheus/rules.
    assert prom_cfg["rule_files"] == ["rules/*.yml"]
    assert _mount_target(services["prometheus"], "./prometheus/rules") == "/etc/prometheus/rules"
    assert _mount_target(services["prometheus"], "./prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    # Grafana: the data sources reach services of the stack, the dashboards folder is the generated JSON.
    for ds in load(DEPLOY / "grafana/provisioning/datasources/datasources.yml")["datasources"]:
        assert _host_port(ds["url"])[0] in services, ds
    provider = load(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")["providers"][0]
    assert _mount_target(services["grafana"], "../dashboards/json") == provider["options"]["path"]
    assert services["grafana"]["image"].startswith("grafana/grafana:11.6")
    # The collector's config is the shared one, and every backend it exports to is a service here.
    otlp = services["exporter"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert _host_port(otlp) == ("otel-collector", 4318)
    assert any(p.startswith("4318") for p in services["otel-collector"]["ports"])
    otel = services["otel-collector"]
    assert _mount_target(otel, "./otel/otel-collector.yaml") in " ".join(otel["command"])
    collector = load(DEPLOY / "otel" / "otel-collector.yaml")
    for exporter in collector["service"]["pipelines"]["traces"]["exporters"]:
        endpoint = collector["exporters"][exporter].get("endpoint")
        if endpoint:
            assert _host_port(endpoint)[0] in services, f"collector exports to {endpoint}, not in compose"


def test_prometheus_and_alertmanager_configs_validate() -> None:
    res = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    amtool = require("amtool")
    res = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_is_small_and_not_root() -> None:
    lines = [
        ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    stages = [i for i, ln in enumerate(lines) if ln.startswith("FROM ")]
    assert len(stages) == 2, "a build stage and a runtime stage"
    final = lines[stages[-1] :]
    assert "slim" in final[0]
    user = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert any(ln == "EXPOSE 9797" for ln in final)
    assert any(ln.startswith("ENTRYPOINT") and "libp2p-exporter" in ln for ln in final)
    assert not any("gcc" in ln or "build-essential" in ln for ln in final)
    for ln in lines:
        if ln.startswith("COPY ") and "--from" not in ln:
            for src in ln.split()[1:-1]:
                assert (REPO / src).exists(), src


def test_prometheusrule_holds_exactly_the_rule_files_groups() -> None:
    (rule,) = load_all(K8S / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    from_files = [g for f in sorted((REPO / RULES_DIR).glob("*.yml")) for g in load(f)["groups"]]
    key = lambda g: g["name"]  # noqa: E731
    assert sorted(rule["spec"]["groups"], key=key) == sorted(from_files, key=key)


def test_dashboards_configmap_matches_dashboards_dir() -> None:
    (cm,) = load_all(K8S / "dashboards-configmap.yaml")
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (REPO / JSON_DIR).glob("*.json")}
    assert cm["data"] == files
    for text in cm["data"].values():
        json.loads(text)


def test_kubernetes_objects_fit_together() -> None:
    kust = load(K8S / "kustomization.yaml")
    docs = {}
    for res in kust["resources"]:
        for doc in load_all(K8S / res):
            docs[doc["kind"]] = doc
    assert {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]
    svc, mon = docs["Service"], docs["ServiceMonitor"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port_names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    assert mon["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--web.listen-address") + 1] == "0.0.0.0:9797" and "--target" in args
    # The ServiceMonitor's job (the Service name) is the job the rules select.
    import re

    (job_re,) = re.findall(r'job=~"([^"]+)"', (K8S / "prometheusrule.yaml").read_text())[:1]
    assert re.fullmatch(job_re, svc["metadata"]["name"]), job_re
    sidecar = load_all(K8S / "sidecar-example.yaml")[0]["spec"]["template"]
    assert svc["spec"]["selector"].items() <= sidecar["metadata"]["labels"].items()
    res = kustomize(K8S)
    assert res.returncode == 0, res.stderr
    assert {d["kind"] for d in yaml.safe_load_all(res.stdout) if d} == set(docs)


def test_systemd_unit(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    text = (DEPLOY / "systemd" / "libp2p-exporter.service").read_text()
    unit.read_string(text)
    service = unit["Service"]
    assert "libp2p-exporter" in service["ExecStart"] and "127.0.0.1:9797" in service["ExecStart"]
    assert service["DynamicUser"] == "yes" and service["NoNewPrivileges"] == "yes"
    # Issue 13: the only writable path under ProtectSystem=strict, and the one the docs record to.
    assert service["StateDirectory"] == "libp2p-exporter" and unit["Unit"]["Documentation"]
    assert "/var/lib/libp2p-exporter/recordings" in (REPO / "docs" / "live.md").read_text()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    analyze = require("systemd-analyze")
    # Verify the unit as written, with the binary pointed at one that exists on this machine.
    copy = tmp_path / "libp2p-exporter.service"
    copy.write_text(text.replace("/opt/libp2p-exporter/bin/libp2p-exporter", sys.executable))
    res = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_deploy_readme_says_what_was_validated() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert "What was validated" in text
    for tool in (
        "promtool check rules",
        "promtool test rules",
        "promtool check config",
        "amtool check-config",
        "systemd-analyze verify",
        "kustomize build",
    ):
        assert tool in text, tool


def test_deploy_readme_documents_every_parameter() -> None:
    from dashboards.params import PARAMS

    text = (DEPLOY / "README.md").read_text()
    for name, param in PARAMS.items():
        assert f"| `{name}` | `{param.default}` |" in text, f"parameter {name} missing or stale in deploy/README.md"


def _exporter_argvs(compose: dict[str, Any]) -> dict[str, list[str]]:
    """Every exporter command line the deployment files give, placeholders filled in as a user would."""
    import re
    import shlex

    def fill(arg: str) -> str:  # compose's ${VAR:-default}
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg)

    argvs = {"compose": [fill(str(a)) for a in compose["services"]["exporter"]["command"]]}
    kube = {doc["kind"]: doc for doc in load_all(K8S / "deployment.yaml")}
    argvs["kubernetes Deployment"] = [
        str(a) for a in kube["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    sidecar = load_all(K8S / "sidecar-example.yaml")[0]["spec"]["template"]["spec"]["containers"]
    argvs["kubernetes sidecar"] = next([str(a) for a in c["args"]] for c in sidecar if "libp2p-exporter" in c["image"])
    cmd = [ln for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if ln.startswith("CMD ")]
    argvs["Dockerfile CMD"] = json.loads(cmd[-1][4:])
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / "libp2p-exporter.service").read_text())
    example = "--target ws://127.0.0.1:5001/introspect"  # the unit's documented LIBP2P_EXPORTER_ARGS
    argvs["systemd"] = shlex.split(unit["Service"]["ExecStart"].replace("$LIBP2P_EXPORTER_ARGS", example))[1:]
    return argvs


def test_deploy_command_lines_use_flags_the_exporter_has(compose: dict[str, Any]) -> None:
    """A flag the CLI does not know would make the container or the service exit at start."""
    from exporter.app.cli import build_parser
    from exporter.app.live import default_to_live

    argvs = _exporter_argvs(compose)
    assert len(argvs) == 5
    for where, argv in argvs.items():
        if where == "Dockerfile CMD":  # the image's default; users append --target
            argv = [*argv, "--target", "ws://node:5001/introspect"]
        try:
            args = build_parser().parse_args(default_to_live(argv, env={}))
        except SystemExit as exc:
            raise AssertionError(f"{where}: the exporter rejects {argv}") from exc
        assert args.command == "live" and args.target, where


def test_image_has_tracing_when_compose_turns_it_on(compose: dict[str, Any]) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on; without the otel extra the exporter exits at start."""
    env = compose["services"]["exporter"].get("environment", {})
    if not any(k.startswith("OTEL_EXPORTER_OTLP") for k in env):
        pytest.skip("compose does not turn tracing on")
    installs = [ln for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if "pip install" in ln and "pip " in ln]
    project = [ln for ln in installs if "--upgrade pip" not in ln]
    assert project and any("[otel]" in ln or "otel]" in ln for ln in project), project
