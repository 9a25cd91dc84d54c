from __future__ import annotations

import pytest

from callcenter.settings import load_settings
from callcenter.yamlconf import ConfigError


def test_defaults_without_a_file(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLCENTER_CONFIG", raising=False)
    s = load_settings()
    assert s.database.dsn is None  # embedded PostgreSQL
    assert s.pbx == [] and s.http.port == 8080


def test_example_file_is_valid(monkeypatch) -> None:
    monkeypatch.setenv("AMI_SECRET", "x")
    from pathlib import Path

    s = load_settings(Path(__file__).parents[2] / "config" / "callcenter.example.yaml")
    assert {p.type for p in s.pbx} == {"asterisk", "freeswitch"}


def test_bad_field_names_file_line_column_and_path(tmp_path) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("http:\n  port: 8080\npbx:\n  - name: ast1\n    type: asterisk\n    username: cc\n"
                 "  - name: fs1\n    type: freeswitch\n    port: nope\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(f)
    assert f"{f}:9:5: pbx[1].port: Input should be a valid integer" in str(exc.value)


def test_unknown_key_and_yaml_syntax_errors(tmp_path) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("http:\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r"cc.yaml:2:3: http.prot: Extra inputs are not permitted"):
        load_settings(f)
    f.write_text("http:\n  port: [1, 2\n")
    with pytest.raises(ConfigError, match=r"cc.yaml:3:1: YAML syntax error"):
        load_settings(f)


def test_environment_overrides_the_file(tmp_path, monkeypatch) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("http:\n  port: 8080\n  host: 0.0.0.0\ndatabase:\n  pool_size: 3\n")
    monkeypatch.setenv("CALLCENTER_HTTP__PORT", "9000")
    monkeypatch.setenv("CALLCENTER_DATABASE__DSN", "postgresql://u:pw@db.example/cc")
    s = load_settings(f)
    assert s.http.port == 9000 and s.http.host == "0.0.0.0"  # other fields of the section kept
    assert s.database.pool_size == 3
    assert s.database.dsn is not None and "pw" not in repr(s.database)
    monkeypatch.setenv("CALLCENTER_HTTP__PORT", "abc")
    with pytest.raises(ConfigError, match=r"environment CALLCENTER_HTTP__PORT: http\.port"):
        load_settings(f)


def test_pbx_secret_comes_from_the_named_environment_variable(tmp_path, monkeypatch) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("pbx:\n  - {name: a, type: asterisk, username: cc, secret_env: MY_AMI_SECRET}\n")
    s = load_settings(f)
    monkeypatch.delenv("MY_AMI_SECRET", raising=False)
    with pytest.raises(ConfigError, match="MY_AMI_SECRET"):
        s.pbx[0].secret_value()
    monkeypatch.setenv("MY_AMI_SECRET", "s3cret")
    assert s.pbx[0].secret_value() == "s3cret"
    assert s.pbx[0].port == 5038


def test_duplicate_pbx_names_refused(tmp_path) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("pbx:\n  - {name: a, type: freeswitch}\n  - {name: a, type: freeswitch}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_settings(f)
