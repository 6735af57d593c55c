"""The rule files as one Prometheus Operator ``PrometheusRule`` (monitoring.coreos.com/v1).

Written by ``make kubernetes`` (deploy/kubernetes/generate.py, from prometheus/rules/*.yml) and by
``feedwatch mixin`` (from the rules it rewrote for the user's job selector). Every group of every
rule file, in file order, unchanged: the Operator loads them into Prometheus as one rule file, so
group names must be unique across files (checked here).
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml

HEADER = """\
# Generated from prometheus/rules/*.yml by deploy/kubernetes/generate.py (`make kubernetes`) or by
# `feedwatch mixin`: do not edit; change the rules and generate it again. For the Prometheus
# Operator (monitoring.coreos.com/v1). kube-prometheus-stack selects PrometheusRules by its
# release label by default: add `release: <your release>` to metadata.labels.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as block literals, like the sources."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def groups(rule_texts: Iterable[str]) -> list[dict[str, Any]]:
    """Every group of the rule files' texts, in order; ValueError on a group name used twice."""
    found: list[dict[str, Any]] = []
    for text in rule_texts:
        found.extend(yaml.safe_load(text)["groups"])
    names = [g["name"] for g in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"rule group names must be unique across files: {', '.join(duplicates)}")
    return found


def render(rule_texts: Iterable[str]) -> str:
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "feedwatch", "labels": {"app.kubernetes.io/name": "feedwatch",
                                                     "app.kubernetes.io/component": "exporter"}},
        "spec": {"groups": groups(rule_texts)},
    }
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
