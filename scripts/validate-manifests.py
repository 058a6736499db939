#!/usr/bin/env python3
"""Validates rendered Helm manifests strictly against Kubernetes' own schemas.

    validate-manifests.py <rendered.yaml> [--expect-split] [--expect-keda]

Every object of a built-in kind is checked with kubernetes-validate in strict mode (an unknown
field is an error). The custom resources (KEDA's ScaledObject, the Prometheus Operator's
ServiceMonitor) have no schema here: they are skipped by name, and what Herald relies on in
them is checked instead (the ScaledObject's prometheus trigger and its target). Exits 1 on the
first kind of failure, naming the object.
"""
import sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
# Custom resources and why each is not validated against a schema.
SKIPPED = {
    ("keda.sh/v1alpha1", "ScaledObject"): "KEDA's CRD; its prometheus trigger is checked below",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "the Prometheus Operator's CRD",
}


def fail(message):
    print(f"validate-manifests: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    path, flags = sys.argv[1], set(sys.argv[2:])
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    kinds = {}
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        kinds.setdefault(obj.get("kind"), []).append(obj)
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in SKIPPED:
            print(f"skipped {name} ({key[0]}): {SKIPPED[key]}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{path}: {name} is invalid at {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            fail(f"{path}: no Kubernetes schema for {name}: {e}")
    print(f"{path}: {len(objects)} objects valid against Kubernetes {KUBERNETES_VERSION} (strict)")

    deployments = {d["metadata"]["name"]: d for d in kinds.get("Deployment", [])}
    roles = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments.values()}
    if "--expect-split" in flags and roles != {"ingest", "sender", "webhook"}:
        fail(f"{path}: expected a Deployment per role, found {sorted(roles)}")
    hooks = [
        j for j in kinds.get("Job", [])
        if "pre-install" in j["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        and j["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    ]
    if not hooks:
        fail(f"{path}: no `herald migrate` pre-install/pre-upgrade hook Job")
    if "--expect-keda" in flags:
        scaled = kinds.get("ScaledObject", [])
        if len(scaled) != 1:
            fail(f"{path}: expected one ScaledObject, found {len(scaled)}")
        spec = scaled[0]["spec"]
        target = spec["scaleTargetRef"]["name"]
        if deployments.get(target, {}).get("metadata", {}).get("labels", {}).get(
            "app.kubernetes.io/component"
        ) != "sender":
            fail(f"{path}: the ScaledObject targets {target}, not the sender Deployment")
        triggers = [t for t in spec["triggers"] if t["type"] == "prometheus"]
        if not triggers or "herald_sender_lag" not in triggers[0]["metadata"]["query"]:
            fail(f"{path}: the ScaledObject has no prometheus trigger on herald_sender_lag")
        if "replicas" in deployments[target]["spec"]:
            fail(f"{path}: the sender Deployment sets replicas although KEDA owns them")


if __name__ == "__main__":
    main()
