"""The generated parts of docs/: the opsmon.yml reference (`python -m opsmon.docs config`) and the metrics one."""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, HttpUrl
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from opsmon import config

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIG_PAGE = DOCS / "config.md"
METRICS_PAGE = DOCS / "metrics.md"
# Everything above this line of a page is written by hand and kept; everything below it is generated.
MARKER = "<!-- Generated below this line by `{command}`: do not edit by hand. -->"
CONFIG_COMMAND = "python -m opsmon.docs config"
METRICS_COMMAND = "UPDATE_DOCS=1 pytest tests/integration/test_docs.py"

# The config's validators of a plain str or Path, by the name of the type they make of it for a user.
VALIDATED = {
    config._resolve: "path",
    config._readable_file: "readable file",
    config._cron: "cron expression",
    config._host_port: "host:port",
    config._http_url: "http(s) URL",
    config._regex: "regular expression",
    config._timezone: "IANA time zone",
}
PLAIN = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", HttpUrl: "http(s) URL"}


def with_generated(page: str, command: str, generated: str) -> str:
    """The page's hand-written part, the marker, and the generated part."""
    marker = MARKER.format(command=command)
    written = page.split(marker, 1)[0] if marker in page else page
    return f"{written.rstrip()}\n\n{marker}\n\n{generated}"


# ---- the config reference ---------------------------------------------------------------------

def _constraints(metadata: list) -> str:
    words = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Field(ge=...) inside Annotated carries its own constraints
            words.append(_constraints(item.metadata))
            continue
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, attribute, None) is not None:
                words.append(f"{sign} {getattr(item, attribute)}")
        if getattr(item, "pattern", None):
            words.append(f"matching `{item.pattern}`")
        if getattr(item, "min_length", None):
            words.append("not empty")
    return ", ".join(word for word in words if word)


def type_name(annotation, metadata: list = ()) -> str:
    """A field's type as a reader of opsmon.yml thinks of it: `host:port`, `list of string`, `integer (>= 0)`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], [*args[1:], *metadata])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) if arg is not type(None) else "null" for arg in args)
    if origin is typing.Literal:
        return " | ".join(f"`{arg}`" for arg in args)
    if origin is list:
        item = type_name(args[0])
        return "list of sections" if item == "section" else f"list of {item}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    validated = [VALIDATED[item.func] for item in metadata if getattr(item, "func", None) in VALIDATED]
    name = validated[-1] if validated else PLAIN.get(annotation, getattr(annotation, "__name__", str(annotation)))
    limits = _constraints(metadata)
    return f"{name} ({limits})" if limits else name


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if value is None:
        return "none"
    if isinstance(value, BaseModel) or value == {} and _model_of(field.annotation):
        return ""
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _model_of(annotation) -> type[BaseModel] | None:
    """The section a field holds: directly, or optionally, or as the items of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found:
            return found
    return None


def config_keys(model: type[BaseModel] = config.OpsmonConfig, prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every key of the schema, a section before its own keys, with its pydantic field."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append((key, field))
        section = _model_of(field.annotation)
        if section:
            is_list = typing.get_origin(field.annotation) is list
            keys.extend(config_keys(section, f"{key}[]." if is_list else f"{key}."))
    return keys


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_reference() -> str:
    lines = []
    for key, field in config_keys():
        if "." not in key and "[" not in key:
            lines += ["", f"## `{key}`", "", _cell(field.description or ""), "",
                      "| key | type | default | description |", "|---|---|---|---|"]
            continue
        lines.append(f"| `{key}` | {_cell(type_name(field.annotation, field.metadata))} | "
                     f"{_cell(_default(field))} | {_cell(field.description or '')} |")
    return "\n".join(lines).lstrip("\n") + "\n"


# ---- the metrics reference --------------------------------------------------------------------

def published_name(family) -> str:
    """The name a family is queried by: the parser drops a counter's `_total`."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def metric_families(exposition: str) -> dict[str, tuple[str, list[str] | None, str]]:
    """Each family of a text exposition: its name, and its type, label names (as seen; None for a family
    with no sample here, such as disk I/O on a machine whose kernel shows no disk) and help."""
    families = {}
    for family in text_string_to_metric_families(exposition):
        seen = {label for sample in family.samples for label in sample.labels} - {"le", "quantile"}
        families[published_name(family)] = (family.type, sorted(seen) if family.samples else None,
                                             family.documentation)
    return families


def labels_in_page(page: str) -> dict[str, list[str]]:
    """The label names a reference page lists for each metric."""
    rows = re.findall(r"^\| `([^`]+)` \| \w+ \| ([^|]*) \|", page, flags=re.MULTILINE)
    return {name: re.findall(r"`([^`]+)`", labels) for name, labels in rows}


def metrics_reference(expositions: dict[str, str], known: dict[str, list[str]] | None = None) -> str:
    """One table per service: every family its /metrics served, by name; the labels of a family with no
    sample on this machine are those `known` (the committed page's), so every machine writes one page."""
    lines = []
    for service, exposition in expositions.items():
        lines += ["", f"## {service}", "", "| metric | type | labels | help |", "|---|---|---|---|"]
        for name, (kind, labels, help_text) in sorted(metric_families(exposition).items()):
            if labels is None:
                labels = (known or {}).get(name, [])
            label_text = ", ".join(f"`{label}`" for label in labels)
            lines.append(f"| `{name}` | {kind} | {label_text} | {_cell(help_text)} |")
    return "\n".join(lines).lstrip("\n") + "\n"


def scrape(url: str) -> str:
    response = requests.get(f"{url.rstrip('/')}/metrics", timeout=30)
    response.raise_for_status()
    return response.text


# ---- the command ------------------------------------------------------------------------------

def write_page(path: Path, command: str, generated: str) -> None:
    path.write_text(with_generated(path.read_text() if path.exists() else "", command, generated))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsmon.docs", description=__doc__)
    pages = parser.add_subparsers(dest="page", required=True)
    pages.add_parser("config", help=f"rewrite the generated part of docs/{CONFIG_PAGE.name} from opsmon/config.py")
    metrics = pages.add_parser("metrics", help="print the metrics reference of a running exporter and backup service "
                                               f"(docs/{METRICS_PAGE.name} is written by `{METRICS_COMMAND}`)")
    metrics.add_argument("--exporter", required=True, help="the exporter's URL, e.g. http://127.0.0.1:9877")
    metrics.add_argument("--backup", required=True, help="the backup service's URL, e.g. http://127.0.0.1:9878")
    args = parser.parse_args(argv)
    if args.page == "config":
        try:
            write_page(CONFIG_PAGE, CONFIG_COMMAND, config_reference())
        except OSError as err:  # an installed opsmon, without the repository's docs/
            print(f"python -m opsmon.docs config: cannot write {CONFIG_PAGE}: {err.strerror} "
                  "(run it in a clone of the repository)", file=sys.stderr)
            return 1
        return 0
    expositions = {}
    for service, url in (("opsmon-exporter", args.exporter), ("opsmon-backup serve", args.backup)):
        try:
            expositions[service] = scrape(url)
        except requests.RequestException as err:
            print(f"python -m opsmon.docs metrics: cannot scrape {service} at {url}: {err}", file=sys.stderr)
            return 1
    known = labels_in_page(METRICS_PAGE.read_text()) if METRICS_PAGE.exists() else None
    print(metrics_reference(expositions, known), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
