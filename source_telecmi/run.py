"""The `source-telecmi` console script: the CDK's entrypoint, masked output, and a process that ends with its sync.

- Every line the process prints goes through one buffer (the CDK's logs, its traces, our
  messages, anything written to stderr), and masking is the last thing done to it: records and
  states are printed as they are (they carry no secret, and a short password masked inside an
  agent id or an instant would corrupt them), every other line is masked whole and in pieces.
  One line more is printed as it is: the CONTROL message of the connector's own config migration
  (migration.py), whose config the platform stores, secrets included (`print_config_control`).
- When stdout closes (the platform cancelled the sync) or the sync fails, the process exits at
  once: no worker sleeping in a retry outlives the sync, and no further request goes out.
"""

from __future__ import annotations

import io
import json
import os
import select
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any, Optional

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteLogMessage,
    AirbyteMessage,
    ConnectorSpecification,
    FailureType,
    Level,
    OrchestratorType,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.migration import MIGRATED_COMMANDS, migrate
from source_telecmi.secrets import mask
from source_telecmi.source import SourceTelecmi

UNMASKED = ('{"type":"RECORD"', '{"type":"STATE"')
STDOUT_CLOSED_EXIT = 141  # as a process killed by SIGPIPE
WATCH_INTERVAL_S = 0.5


class TelecmiEntrypoint(AirbyteEntrypoint):
    """The CDK's entrypoint, whose config validation says which field is wrong and how to fix it.

    The CDK's own check against the spec reports a raw schema message ("0 is less than the minimum
    of 1"); the connector's config checks run first and name the field, then the spec is checked
    with the field's path in the message.
    """

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        TelecmiConfig.parse(config)
        error = best_match(Draft7Validator(source_spec.connectionSpecification).iter_errors(dict(config)))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "the config"
            raise ConfigError(f"{where}: {error.message}")


class MaskedStream:
    """A stream that masks every complete line written to it, but records and states, before passing it on.

    Installed as stdout and stderr, and as `sys.__stdout__` (where the CDK's print buffer writes):
    every output path of the process ends here. On stdout, a line that is not a protocol message
    (a stray warning) is passed on as a LOG message, so every line stays a valid AirbyteMessage.
    """

    def __init__(self, target: Any, protocol: bool) -> None:
        self._target = target
        self._protocol = protocol
        self._partial = ""
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        with self._lock:
            complete, newline, self._partial = (self._partial + text).rpartition("\n")
            if newline:
                self._send(self._shape(complete + newline))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._send("")

    def close_line(self) -> None:
        """Pass on a last line that did not end with a newline."""
        with self._lock:
            if self._partial:
                partial, self._partial = self._partial, ""
                self._send(self._shape(partial + "\n"))

    def print_config_control(self, message: AirbyteMessage) -> None:
        """Print a CONTROL message of type CONNECTOR_CONFIG as it is, secrets included, and nothing else.

        The platform stores the config of this message as the connection's: a masked secret would be
        stored as the mask. Only `run` calls this, with the message the connector's config migration
        made (migration.py); every other line, a CONTROL message printed any other way included, is
        masked as ever. The line goes out whole, before any line still being written.
        """
        control = message.control if message.type == Type.CONTROL else None
        if control is None or control.type != OrchestratorType.CONNECTOR_CONFIG or control.connectorConfig is None:
            raise ValueError("only a CONTROL message of type CONNECTOR_CONFIG is printed unmasked")
        line = AirbyteEntrypoint.airbyte_message_to_string(message)
        if "\n" in line:  # no line of it may pass for another message
            raise ValueError("a CONTROL message must be one line")
        with self._lock:
            self._send(line + "\n")

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return False

    def _shape(self, text: str) -> str:
        lines = []
        # Lines end at "\n" alone, as every reader of the protocol splits them: `str.splitlines` also
        # breaks at U+2028, U+2029, U+0085 and \x0b-\x0c, \x1c-\x1e, which a record's note may hold.
        for part in text.split("\n")[:-1]:  # `text` ends with a newline
            line = part + "\n"
            if line.startswith(UNMASKED) or not part.strip(" \t\r"):
                lines.append(line)
            elif not self._protocol:
                lines.append(mask(line))
            else:
                lines.append(masked_message(line))
        return "".join(lines)

    def _send(self, text: str) -> None:
        try:
            if text:
                write_all(self._target, text)
            else:
                self._target.flush()
        except (BrokenPipeError, ValueError, OSError):
            os._exit(STDOUT_CLOSED_EXIT)  # nobody reads: the sync was cancelled


def write_all(target: Any, text: str) -> None:
    """Write `text` to `target` whole, or raise.

    Python's text layer over a non-blocking pipe drops what the pipe refuses without an error, so
    the bytes go to the file descriptor directly, the rest of a partial write after it, waiting for
    the pipe to take more when it is full. A target without a descriptor (a test's buffer) is
    written as it is, and a pipe or file
    the process was given, a `FileIO`, by its descriptor.
    """
    binary = getattr(target, "buffer", None)  # a FileIO itself when Python runs unbuffered (PYTHONUNBUFFERED)
    raw = binary if isinstance(binary, io.FileIO) else getattr(binary, "raw", None)
    if not isinstance(raw, io.FileIO):
        target.write(text)
        target.flush()
        return
    fd = raw.fileno()
    target.flush()  # anything written to it before it was wrapped goes first
    data = memoryview(text.encode("utf-8", "backslashreplace"))  # the protocol is UTF-8, whatever the locale
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except InterruptedError:
            continue
        if written:
            data = data[written:]
        else:
            wait_writable(fd)


def wait_writable(fd: int) -> None:
    """Wait until a full non-blocking pipe can take more (the reader is slow, not gone: a gone one raises on write)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT | select.POLLERR | select.POLLHUP)
    poller.poll(WATCH_INTERVAL_S * 1000)


def masked_message(line: str) -> str:
    """A protocol line with every string in it masked (numbers are left alone: masking them breaks the JSON);
    a line that is no protocol message (a stray warning) becomes a LOG message."""
    try:
        message = json.loads(line)
    except ValueError:
        return as_log_line(mask(line.rstrip("\n")))
    if not isinstance(message, dict) or "type" not in message:
        return as_log_line(mask(line.rstrip("\n")))
    if message["type"] == "DEBUG":  # the CDK's debug log lines are no protocol message: made a LOG at DEBUG
        data = message.get("data")
        text = f"{message.get('message', '')} {json.dumps(data, default=str)}" if data else message.get("message", "")
        return as_log_line(mask(str(text)), Level.DEBUG)
    return json.dumps(masked_strings(message), ensure_ascii=False, separators=(",", ":")) + "\n"


def masked_strings(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: masked_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked_strings(item) for item in value]
    return value


def as_log_line(text: str, level: Level = Level.WARN) -> str:
    log = AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=level, message=text))
    return AirbyteEntrypoint.airbyte_message_to_string(log) + "\n"


def watch_stdout() -> None:
    """Exit as soon as whoever reads stdout is gone, even while nothing is printed (workers in retry waits)."""
    try:
        fd = sys.__stdout__.fileno()  # type: ignore[union-attr]
        poller = select.poll()
        poller.register(fd, select.POLLERR | select.POLLHUP)
    except (AttributeError, OSError, ValueError):
        return

    def watch() -> None:
        while True:
            if poller.poll(WATCH_INTERVAL_S * 1000):
                os._exit(STDOUT_CLOSED_EXIT)

    threading.Thread(target=watch, name="stdout-watch", daemon=True).start()


def failure_lines(error: BaseException) -> str:
    """The error trace of a failure, after its traceback as a log line (none for a config error)."""
    traced = error if isinstance(error, AirbyteTracedException) else AirbyteTracedException.from_exception(error)
    lines = ""
    if traced.failure_type != FailureType.config_error:
        log = AirbyteMessage(
            type=Type.LOG,
            log=AirbyteLogMessage(level=Level.ERROR, message="".join(traceback.format_exception(error))),
        )
        lines += AirbyteEntrypoint.airbyte_message_to_string(log) + "\n"
    return lines + AirbyteEntrypoint.airbyte_message_to_string(traced.as_airbyte_message()) + "\n"


def run(argv: Optional[list[str]] = None) -> int:
    """Run the connector with the Airbyte protocol arguments; returns the exit code."""
    out, err = MaskedStream(sys.stdout, protocol=True), MaskedStream(sys.stderr, protocol=False)
    saved = sys.stdout, sys.stderr, sys.__stdout__
    sys.stdout, sys.stderr, sys.__stdout__ = out, err, out  # type: ignore[misc]
    code = 0
    try:
        with PRINT_BUFFER:
            try:
                entrypoint = TelecmiEntrypoint(SourceTelecmi())
                args = entrypoint.parse_args(argv if argv is not None else sys.argv[1:])
                if args.command in MIGRATED_COMMANDS:  # a config saved by an older version, stored again upgraded
                    migrate(getattr(args, "config", None), out.print_config_control, entrypoint.logger)
                for message in entrypoint.run(args):
                    print(f"{message}\n", end="")  # one write: a worker's log line cannot land inside it
            except SystemExit as leaving:
                code = leaving.code if isinstance(leaving.code, int) else 1
            except Exception as error:  # noqa: BLE001 - the last word is a masked trace
                if not getattr(error, "reported", False):
                    print(failure_lines(error), end="")
                code = 1
    finally:
        out.close_line()
        err.close_line()
        sys.stdout, sys.stderr, sys.__stdout__ = saved  # type: ignore[misc]
    return code


def main() -> None:
    """The console script: run, then end the process at once, whatever threads are still waiting."""
    watch_stdout()
    code = run()
    sys.stdout.flush()
    os._exit(code)
