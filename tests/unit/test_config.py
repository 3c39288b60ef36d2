"""Config validation: every problem named with file and key, all at once, exit status 2."""

from __future__ import annotations


import pytest

from opsmon.config import InvalidConfig, load_config
from tests.conftest import REPO, write_config

INVALID = [
    ("unknown top-level key", {"database": {"path": "a.db"}, "exportr": {}},
     ["exportr: unknown key"]),
    ("misspelled nested key", {"database": {"path": "a.db", "nmae": "x"}},
     ["database.nmae: unknown key"]),
    ("a key an earlier release accepted", {"database": {"path": "a.db"}, "backups": {"directory": "b", "retention": {"safety": 3}}},
     ["backups.retention.safety: replaced by safety_days: safety backups are kept by age (days), not by count"]),
    ("missing database path", {"database": {}},
     ["database.path: required key is missing"]),
    ("missing database section", {"exporter": {}},
     ["database: required key is missing"]),
    ("bad probe url", {"database": {"path": "a.db"}, "exporter": {"probes": [{"service": "x", "url": "not a url"}]}},
     ["exporter.probes[0].url: Input should be a valid URL, relative URL without a base"]),
    ("probe timeout is text", {"database": {"path": "a.db"},
                               "exporter": {"probes": [{"service": "x", "url": "http://h/", "timeout_seconds": "x"}]}},
     ["exporter.probes[0].timeout_seconds: Input should be a valid number, unable to parse string as a number"]),
    ("negative timeout", {"database": {"path": "a.db"},
                          "exporter": {"probes": [{"service": "x", "url": "http://h/", "timeout_seconds": -1}]}},
     ["exporter.probes[0].timeout_seconds: Input should be greater than 0"]),
    ("unknown log format", {"database": {"path": "a.db"},
                            "exporter": {"logs": [{"source": "s", "path": "a.log", "format": "xml"}]}},
     ["exporter.logs[0].format: Input should be 'json' or 'text'"]),
    ("bad regex", {"database": {"path": "a.db"},
                   "exporter": {"processes": [{"name": "p", "match": "(unclosed"}]}},
     ["exporter.processes[0].match: not a valid regular expression: missing ), unterminated subpattern "
      "at position 0"]),
    ("process with both selectors", {"database": {"path": "a.db"},
                                     "exporter": {"processes": [{"name": "p", "match": "x", "pidfile": "p.pid"}]}},
     ["exporter.processes[0]: give exactly one of pidfile or match"]),
    ("listen address without port", {"database": {"path": "a.db"}, "exporter": {"listen_address": "localhost"}},
     ["exporter.listen_address: must be host:port (':9877' for every interface), got 'localhost'"]),
    ("bad metric name", {"database": {"path": "a.db"},
                         "business": [{"name": "bad-name", "help": "h", "query": "SELECT 1 AS value"}]},
     ["business[0].name: String should match pattern '^[a-zA-Z_][a-zA-Z0-9_]*$'"]),
    ("tls cert that is not there", {"database": {"path": "a.db"},
                                    "exporter": {"web": {"tls_cert_file": "missing.crt", "tls_key_file": "x.key"}}},
     ["exporter.web.tls_cert_file: {dir}/missing.crt does not exist or is not a file",
      "exporter.web.tls_key_file: {dir}/x.key does not exist or is not a file"]),
    ("log file under a file", {"database": {"path": "a.db"},
                               "exporter": {"logs": [{"source": "s", "path": "plain-file/app.log"}]}},
     ["exporter.logs[0].path: {dir}/plain-file is not a directory"]),
    ("repeated probe names", {"database": {"path": "a.db"},
                              "exporter": {"probes": [{"service": "x", "url": "http://a/"},
                                                      {"service": "x", "url": "http://b/"}]}},
     ["exporter.probes service must be unique, repeated: x"]),
    ("several problems at once", {"database": {"path": "a.db", "extra": 1},
                                  "exporter": {"scrape_timeout_seconds": 0, "probes": "nope"}},
     ["database.extra: unknown key",
      "exporter.scrape_timeout_seconds: Input should be greater than 0",
      "exporter.probes: Input should be a valid list"]),
]


@pytest.mark.parametrize("case, document, expected", INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_config_is_reported_exactly(tmp_path, case, document, expected):
    (tmp_path / "plain-file").write_text("not a folder")
    path = write_config(tmp_path / "opsmon.yml", document)
    with pytest.raises(InvalidConfig) as raised:
        load_config(path)
    assert raised.value.problems == [f"{path}: {line.format(dir=tmp_path)}" for line in expected]


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "opsmon.yml"
    path.write_text("database:\n  path: [unclosed\n")
    with pytest.raises(InvalidConfig) as raised:
        load_config(path)
    assert raised.value.problems == [f"{path}: line 3, column 1: not valid YAML: expected ',' or ']', but got '<stream end>'"]


def test_missing_file(tmp_path):
    with pytest.raises(InvalidConfig) as raised:
        load_config(tmp_path / "nope.yml")
    assert raised.value.problems == [f"{tmp_path}/nope.yml: cannot read config file: No such file or directory"]


def test_relative_paths_are_relative_to_the_file(tmp_path):
    config = load_config(write_config(tmp_path / "opsmon.yml", {"database": {"path": "data/app.db"}}))
    assert config.database.path == tmp_path / "data/app.db"
    assert config.exporter.state_directory == tmp_path / ".opsmon-state"
    assert config.database.label == "app"


def test_shipped_config_is_valid():
    config = load_config(REPO / "opsmon.yml")
    assert [q.name for q in config.business_queries] == ["business_videos_queued"]  # events are counted by the app
