"""The fleet's deployment files (issue 12): the sharded StatefulSet and what scrapes it, checked like the
single-replica ones in test_deploy.py: parsed, cross-checked, the exporter's command line run through the
exporter's own parser and configuration, and the validators (kustomize build,
promtool check config, in agent mode too)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.collector import assert_pipelines_defined
from tests.support.procs import REPO, kustomize, promtool

DEPLOY = REPO / "deploy"
SHARDED = DEPLOY / "kubernetes" / "sharded"
PROM = DEPLOY / "prometheus"
OTEL = DEPLOY / "otel"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def kust() -> dict[str, Any]:
    return load(SHARDED / "kustomization.yaml")


@pytest.fixture(scope="module")
def objs(kust: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((SHARDED / res).read_text()):
            if doc:
                assert doc["kind"] not in out, f"two {doc['kind']} objects"
                out[doc["kind"]] = doc
    return out


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def _arg(args: list[str], flag: str) -> str:
    """The value of ``flag``, given as ``flag VALUE`` or ``flag=VALUE``."""
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.partition("=")[2]
    raise AssertionError(f"{flag} not in {args}")


def _per_replica_urls(objs: dict[str, dict[str, Any]], namespace: str) -> list[str]:
    """The /discovery URL of every replica, by the headless Service's per-pod DNS names."""
    sts, svc = objs["StatefulSet"], objs["Service"]
    port = svc["spec"]["ports"][0]["port"]
    return [
        f"http://{sts['metadata']['name']}-{i}.{svc['metadata']['name']}.{namespace}.svc:{port}/discovery"
        for i in range(sts["spec"]["replicas"])
    ]


def test_statefulset_headless_service_and_monitor_fit_together(
    kust: dict[str, Any], objs: dict[str, dict[str, Any]]
) -> None:
    assert {"ConfigMap", "StatefulSet", "Service", "ServiceMonitor", "ScrapeConfig"} == set(objs)
    sts, svc, mon = objs["StatefulSet"], objs["Service"], objs["ServiceMonitor"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    # Headless, and the StatefulSet's governing Service: that is what gives NAME-N.SERVICE DNS names.
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    exporter = _container(pod, "exporter")
    port_names = {p["name"]: p["containerPort"] for p in exporter["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    assert mon["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert mon["spec"]["endpoints"][0]["path"] == "/metrics"
    # The ServiceMonitor's job (the Service name) is one the alert rules select.
    from dashboards.params import PARAMS

    assert re.fullmatch(str(PARAMS["job"].default), svc["metadata"]["name"])
    # The same hardening as the single-replica Deployment, for every container.
    (deployment,) = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text()) if d]
    single = deployment["spec"]["template"]["spec"]
    assert pod["spec"]["securityContext"] == single["securityContext"]
    for container in pod["spec"]["containers"]:
        assert container["securityContext"] == single["containers"][0]["securityContext"], container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]


def test_configmap_reaches_every_replica_and_the_reloader(objs: dict[str, dict[str, Any]]) -> None:
    pod = objs["StatefulSet"]["spec"]["template"]["spec"]
    cm = objs["ConfigMap"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    exporter, reloader = _container({"spec": pod}, "exporter"), _container({"spec": pod}, "config-reloader")
    config = Path(_arg(exporter["args"], "--config"))
    assert config.name in cm["data"]
    for container in (exporter, reloader):
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        # A whole-directory mount: the kubelet updates it in place (a subPath mount never changes).
        assert "subPath" not in mount and mount["mountPath"] == str(config.parent), container["name"]
    # The reloader watches that directory and POSTs to the exporter's /-/reload, which the exporter allows.
    assert _arg(reloader["args"], "--volume-dir") == str(config.parent)
    hook = urllib.parse.urlparse(_arg(reloader["args"], "--webhook-url"))
    listen = _arg(exporter["args"], "--web.listen-address")
    assert hook.hostname == "127.0.0.1" and hook.port == int(listen.rpartition(":")[2])
    assert hook.path == "/-/reload" and "--web.enable-lifecycle" in exporter["args"]
    # The reloader's own metrics port stays off the exporter's.
    assert _arg(reloader["args"], "--web.listen-address").rpartition(":")[2] != listen.rpartition(":")[2]


def _replica_argv(objs: dict[str, dict[str, Any]], ordinal: int, config: Path) -> list[str]:
    """The exporter's argv in pod NAME-<ordinal>, as the kubelet expands it ($(VAR) from the env)."""
    sts = objs["StatefulSet"]
    exporter = _container(sts["spec"]["template"], "exporter")
    env: dict[str, str] = {}
    for var in exporter.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
            env[var["name"]] = f"{sts['metadata']['name']}-{ordinal}"
    argv = []
    for arg in map(str, exporter["args"]):
        for ref in re.findall(r"\$\((\w+)\)", arg):
            assert ref in env, f"$({ref}) is not one of the container's env variables"
            arg = arg.replace(f"$({ref})", env[ref])
        argv.append(arg)
    i = argv.index("--config")
    argv[i + 1] = str(config)
    return argv


def test_every_replica_parses_and_the_shards_cover_the_targets_once(
    objs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Each replica's command line, with its own pod name, is accepted by the exporter's parser and
    configuration; together the replicas watch every target of the ConfigMap exactly once."""
    from exporter.app.cli import build_parser
    from exporter.app.config import build, check_file
    from exporter.app.live import _flags, default_to_live

    config = tmp_path / "targets.yml"
    config.write_text(objs["ConfigMap"]["data"]["targets.yml"])
    ok, text = check_file(str(config))
    assert ok and "warning" not in text, text
    replicas = objs["StatefulSet"]["spec"]["replicas"]
    owners: dict[str, int] = {}
    for ordinal in range(replicas):
        argv = _replica_argv(objs, ordinal, config)
        try:
            args = build_parser().parse_args(default_to_live(argv, env={}))
        except SystemExit as exc:
            raise AssertionError(f"replica {ordinal}: the exporter rejects {argv}") from exc
        assert args.command == "live" and args.enable_lifecycle
        cfg = build(_flags(args), args.target, args.config, env={})
        assert (cfg.shard.index, cfg.shard.total) == (ordinal, replicas), "--total-shards must equal replicas"
        assert cfg.metrics_nodes == "none" and cfg.serving.listen == "0.0.0.0:9797"
        for target in cfg.owned_targets:
            assert target.name not in owners, f"{target.name} watched by replicas {owners[target.name]} and {ordinal}"
            owners[target.name] = ordinal
        all_names = {t.name for t in cfg.targets}
    assert set(owners) == all_names, f"watched by no replica: {all_names - set(owners)}"
    assert set(owners.values()) == set(range(replicas)), "the example list leaves a replica idle"


def test_kustomize_renders_the_sharded_directory(kust: dict[str, Any], objs: dict[str, dict[str, Any]]) -> None:
    res = kustomize(SHARDED)
    assert res.returncode == 0, res.stderr
    rendered = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert {d["kind"] for d in rendered} == set(objs)
    assert {d["metadata"]["namespace"] for d in rendered} == {kust["namespace"]}


def _jobs(path: Path) -> dict[str, dict[str, Any]]:
    return {j["job_name"]: j for j in load(path)["scrape_configs"]}


def _hashmod_then_keep(relabels: list[dict[str, Any]], source: str) -> None:
    """Prometheus-side sharding: hashmod of ``source`` into __tmp_hash, then keep this server's bucket."""
    hashmod, keep = relabels[0], relabels[1]
    assert hashmod["action"] == "hashmod" and hashmod["source_labels"] == [source]
    assert hashmod["target_label"] == "__tmp_hash" and hashmod["modulus"] >= 1
    assert keep["action"] == "keep" and keep["source_labels"] == ["__tmp_hash"]
    assert 0 <= int(keep["regex"]) < hashmod["modulus"]


def test_prometheus_configs_validate_and_point_at_each_replica(
    kust: dict[str, Any], objs: dict[str, dict[str, Any]]
) -> None:
    server, agent = PROM / "sharded-prometheus.yml", PROM / "agent-remote-write.yml"
    res = promtool("check", "config", str(server))
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("check", "config", "--agent", str(agent))
    assert res.returncode == 0, res.stdout + res.stderr
    assert load(agent)["remote_write"] and "rule_files" not in load(agent)
    # The agent scrapes exactly as the server does.
    assert _jobs(agent) == _jobs(server)
    from dashboards.params import PARAMS

    jobs = _jobs(server)
    urls = _per_replica_urls(objs, kust["namespace"])
    assert len(urls) == objs["StatefulSet"]["spec"]["replicas"] == 3
    (probe_job,) = [j for j in jobs.values() if "http_sd_configs" in j]
    assert [c["url"] for c in probe_job["http_sd_configs"]] == urls
    assert re.fullmatch(str(PARAMS["job"].default), probe_job["job_name"])
    _hashmod_then_keep(probe_job["relabel_configs"], "__param_target")
    (own_job,) = [j for j in jobs.values() if "dns_sd_configs" in j]
    svc = objs["Service"]
    (dns,) = own_job["dns_sd_configs"]
    assert dns["names"] == [f"{svc['metadata']['name']}.{kust['namespace']}.svc"] and dns["type"] == "A"
    assert dns["port"] == svc["spec"]["ports"][0]["port"]
    assert own_job["job_name"] == svc["metadata"]["name"]  # the ServiceMonitor's job, for the same rules
    _hashmod_then_keep(own_job["relabel_configs"], "__address__")
    # The Operator's ScrapeConfig is the same job.
    spec = objs["ScrapeConfig"]["spec"]
    assert spec["jobName"] == probe_job["job_name"]
    assert [c["url"] for c in spec["httpSDConfigs"]] == urls


def test_loadbalancing_collector_feeds_the_tail_samplers() -> None:
    lb, sampler = load(OTEL / "otel-loadbalancer.yaml"), load(OTEL / "otel-tail-sampling.yaml")
    for cfg in (lb, sampler):
        assert_pipelines_defined(cfg)
    (exporter,) = lb["service"]["pipelines"]["traces"]["exporters"]
    balancing = lb["exporters"][exporter]
    assert exporter == "loadbalancing" and balancing["routing_key"] == "traceID"
    assert "otlp" in balancing["protocol"]
    # The DNS resolver's backends are the samplers' OTLP/gRPC receivers.
    dns = balancing["resolver"]["dns"]
    assert dns["hostname"].split(".")[0] == "otel-tail-sampling"
    assert str(dns["port"]) == sampler["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rpartition(":")[2]
    processors = sampler["service"]["pipelines"]["traces"]["processors"]
    assert processors[0] == "memory_limiter" and "tail_sampling" in processors
    assert processors.index("tail_sampling") < processors.index("batch"), "sample whole traces, then batch"
    assert sampler["processors"]["tail_sampling"]["policies"]


def test_fleet_docs_cover_the_files_and_the_flags() -> None:
    readme = (DEPLOY / "README.md").read_text()
    section = readme.partition("## Fleets: sharding across replicas")[2].partition("\n## ")[0]
    assert section, "deploy/README.md has no fleet section"
    for path in (
        "kubernetes/sharded",
        "prometheus/sharded-prometheus.yml",
        "prometheus/agent-remote-write.yml",
        "otel/otel-loadbalancer.yaml",
        "otel/otel-tail-sampling.yaml",
    ):
        assert path in readme, path
        assert (DEPLOY / path).exists(), path
    for word in ("--enable-feature=agent", "remote_write", "hashmod", "routing_key: traceID", "Thanos", "Mimir"):
        assert word in section, word
    assert "promtool check config --agent" in readme
    # docs/live.md: every fleet flag of live's help, and every environment variable live mode reads.
    from exporter.app.cli import build_parser
    from exporter.app.config import _ENV, ENV_PREFIX
    from exporter.app.live import FLEET_GROUP

    live = (REPO / "docs" / "live.md").read_text()
    parser = build_parser()
    live_parser = parser._subparsers._group_actions[0].choices["live"]  # type: ignore[union-attr]
    (group,) = [g for g in live_parser._action_groups if g.title == FLEET_GROUP]
    for action in group._group_actions:
        assert f"`{action.option_strings[0]}" in live, f"docs/live.md does not document {action.option_strings[0]}"
    for suffix in _ENV:
        assert ENV_PREFIX + suffix in live, f"docs/live.md does not name {ENV_PREFIX}{suffix}"
    for key in ("sharding.shard", "sharding.total_shards", "metrics.nodes", "/-/reload", "SIGHUP"):
        assert key in live, key


def test_discovery_example_in_docs_is_what_the_endpoint_returns() -> None:
    import json

    from exporter.app.discovery import target_groups
    from exporter.sources.options import Target
    from exporter.sources.sharding import Shard

    live = (REPO / "docs" / "live.md").read_text()
    (block,) = re.findall(r"^```json\n(.*?)^```", live, re.S | re.M)
    (group,) = json.loads(block)
    labels = group["labels"]
    shard = Shard(int(labels["__meta_libp2p_shard"]), int(labels["__meta_libp2p_total_shards"]))
    target = Target(url=labels["__param_target"], name=labels["__meta_libp2p_node"], labels={"role": "bootstrap"})
    assert shard.owns(target.name), "the example's node belongs to another shard"
    assert target_groups([target], group["targets"][0], "http", shard) == [group]
