"""Log lines in both formats: flat ``key=value`` pairs (text) and one JSON object a line (json), each with the
component and the trace id, values holding spaces, quotes or newlines kept whole and escaped."""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.cli import build_parser
from services.common.logs import LogFormat, parse_template, setup_logging

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
#: One logfmt pair: a bare value, or a double-quoted one with JSON escapes.
PAIR = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')


def parse_logfmt(line: str) -> dict[str, object]:
    """The pairs of one text line; fails unless the whole line is ``key=value`` pairs (flat: nothing else)."""
    pairs: dict[str, object] = {}
    position = 0
    while position < len(line):
        match = PAIR.match(line, position)
        assert match is not None, f"not a key=value pair at {line[position:]!r} in {line!r}"
        key, value = match.groups()
        assert key not in pairs, f"{key} twice in {line!r}"
        pairs[key] = json.loads(value) if value.startswith('"') else value
        position = match.end()
    return pairs


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """setup_logging for the test only: the root logger's handlers and level are put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def warn_in_a_span(log_format: LogFormat, component: str, template: str, *args: object) -> None:
    """One warning from ``component``, logged in ``log_format`` inside a span of trace ``TRACE_ID``."""
    setup_logging(component, log_format=log_format)
    span = NonRecordingSpan(SpanContext(trace_id=TRACE_ID, span_id=0x00F067AA0BA902B7, is_remote=False,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(span):
        logging.getLogger("metalbus.test").warning(template, *args)


@pytest.mark.usefixtures("logged")
def test_a_text_line_is_flat_key_value_pairs_with_the_component_and_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    warn_in_a_span(LogFormat.TEXT, "announcer", "l2 agent started node=%s desired=%d", "fp1", 3)
    [line] = lines(capsys)
    assert re.fullmatch(r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=warning component=announcer"
                        r" logger=metalbus\.test msg=\"l2 agent started\" node=fp1 desired=3 trace_id=\w{32}", line)
    assert parse_logfmt(line)["trace_id"] == format(TRACE_ID, "032x")


@pytest.mark.usefixtures("logged")
def test_a_json_line_has_the_same_keys_counts_as_numbers_and_the_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    warn_in_a_span(LogFormat.JSON, "ipam", "failover node=%s seconds=%.3f decisions=%d fenced=%s", "fp2", 1.5, 7,
                   True)
    [line] = lines(capsys)
    document = json.loads(line)
    assert list(document) == ["time", "level", "component", "logger", "msg", "node", "seconds", "decisions",
                              "fenced", "trace_id"]
    assert document["level"] == "warning" and document["component"] == "ipam" and document["msg"] == "failover"
    assert (document["node"], document["seconds"], document["decisions"], document["fenced"]) == ("fp2", 1.5, 7,
                                                                                                 True)
    assert document["trace_id"] == format(TRACE_ID, "032x")


@pytest.mark.usefixtures("logged")
def test_outside_a_span_no_trace_id_is_written(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("watcher", log_format=LogFormat.TEXT)
    logging.getLogger("metalbus.test").info("listed resource=%s objects=%d", "services", 2)
    assert "trace_id" not in parse_logfmt(lines(capsys)[0])


HOSTILE = ['two words', 'a "quoted" name', "key=value inside", "back\\slash", "line\nbreak", "", "tab\there",
           "é unicode"]


@pytest.fixture(params=list(LogFormat), ids=str)
def each_format(request: pytest.FixtureRequest, logged: None) -> LogFormat:
    """The test once per format, logging set up by the test and put back after."""
    log_format: LogFormat = request.param
    return log_format


def read_back(capsys: pytest.CaptureFixture[str], log_format: LogFormat) -> list[dict[str, object]]:
    """The lines logged so far, each as its keys and values."""
    parse = parse_logfmt if log_format is LogFormat.TEXT else json.loads
    return [parse(line) for line in lines(capsys)]


def test_values_with_spaces_quotes_and_newlines_stay_one_value_each(
    capsys: pytest.CaptureFixture[str], each_format: LogFormat,
) -> None:
    setup_logging("watcher", log_format=each_format)
    for value in HOSTILE:
        logging.getLogger("metalbus.test").warning("skipped document origin=%s problem=%s", value, "bad")
    read = read_back(capsys, each_format)
    assert [(fields["origin"], fields["problem"]) for fields in read] == [(value, "bad") for value in HOSTILE]


@pytest.mark.usefixtures("logged")
def test_a_text_value_is_quoted_and_escaped_only_when_it_must_be(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("watcher", log_format=LogFormat.TEXT)
    logging.getLogger("metalbus.test").warning("bus error error=%r plain=%s", OSError('refused "x"'), "10.0.0.1")
    assert lines(capsys)[0].endswith(r' msg="bus error" error="OSError(' + "'refused \\\"x\\\"')\" plain=10.0.0.1")


def test_free_text_of_another_library_is_the_whole_message(
    capsys: pytest.CaptureFixture[str], each_format: LogFormat,
) -> None:
    setup_logging("watcher", log_format=each_format)
    logging.getLogger("urllib3").warning("Retrying (%r) after connection broken by '%r': %s", 2, "reset", "/api")
    [fields] = read_back(capsys, each_format)
    assert fields["msg"] == "Retrying (2) after connection broken by ''reset'': /api"
    assert fields["logger"] == "urllib3"


@pytest.mark.usefixtures("logged")
def test_a_field_named_like_a_line_key_does_not_overwrite_it(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("watcher", log_format=LogFormat.JSON)
    log = logging.getLogger("metalbus.test")
    log.info("stopped component=%s code=%d", "watcher", 0)
    log.info("input refused component=%s reason=%s", "ipam", "Malformed")
    same, other = (json.loads(line) for line in lines(capsys))
    assert same["component"] == "watcher" and "field_component" not in same
    assert other["component"] == "watcher" and other["field_component"] == "ipam"


def test_a_traceback_goes_with_its_line(capsys: pytest.CaptureFixture[str], each_format: LogFormat) -> None:
    setup_logging("ipam", log_format=each_format)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("metalbus.test").exception("handler failed subject=%s", "k8s.x")
    output = lines(capsys)
    if each_format is LogFormat.JSON:
        [line] = output
        assert json.loads(line)["exception"].endswith("ValueError: boom")
    else:
        assert parse_logfmt(output[0])["subject"] == "k8s.x"
        assert output[-1] == "ValueError: boom"


def test_the_format_comes_from_the_environment_when_not_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, logged: None,
) -> None:
    monkeypatch.setenv("METALBUS_LOG_FORMAT", "json")
    setup_logging("ipam")
    logging.getLogger("metalbus.test").info("active decided=%d", 1)
    assert json.loads(lines(capsys)[0])["decided"] == 1


LONG_RUNNING = [["watcher"], ["ipam"], ["announcer"], ["authenticator"], ["nats"], ["dev"], ["lab", "up"],
                ["bus", "provision"]]


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
def test_every_long_running_command_takes_a_log_format(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    assert parser.parse_args([*command, "--log-format", "json"]).log_format is LogFormat.JSON
    monkeypatch.setenv("METALBUS_LOG_FORMAT", "json")
    assert build_parser().parse_args(command).log_format is LogFormat.JSON
    monkeypatch.delenv("METALBUS_LOG_FORMAT")
    assert build_parser().parse_args(command).log_format is LogFormat.TEXT
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--log-format", "yaml"])


def _log_templates() -> Iterator[tuple[str, str]]:
    for path in sorted(Path("services").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in {"log", "logger"}
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                yield f"{path}:{node.lineno}", node.args[0].value


def test_every_log_call_is_a_message_then_key_value_fields() -> None:
    """So every line of ours is flat: no ``event=...`` standing in for the message, no text after the fields."""
    found = list(_log_templates())
    assert len(found) > 100
    irregular = [f"{where}: {template!r}" for where, template in found
                 if (parsed := parse_template(template)) is None or not parsed.message or "=" in parsed.message]
    assert not irregular, "\n".join(irregular)
