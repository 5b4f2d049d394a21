"""The AGI wire format, sans I/O, and the channel interface both AGI transports offer.

What Asterisk sends (recordings 04 and 09, ``tests/captures/``):

* the ``agi_*`` environment: ``key: value`` lines ending in a blank line (FastAGI), or the
  same text URL-encoded in AsyncAGIStart's ``Env`` header;
* one reply per command: ``200 result=N [(data)] [endpos=N]``, ``510 Invalid or unknown
  command``, ``511 Command Not Permitted on a dead channel...``, or a ``520-`` usage block
  closed by ``520 End of proper usage.``; over AsyncAGI the reply is AsyncAGIExec's
  URL-encoded ``Result`` header;
* over FastAGI, a bare ``HANGUP`` line, at any time, when the caller hangs up.

Commands are formatted here too (one function per command the IVR uses), quoting arguments
the way Asterisk's ``parse_args`` reads them: double quotes group, a backslash escapes the
next character. The interpreter's steps are mapped to these functions by the IVR's shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from urllib.parse import unquote

from twisted.internet.defer import Deferred

from ivr.errors import IvrError

__all__ = [
    "AgiArgumentError",
    "AgiChannel",
    "AgiCommandError",
    "AgiEnd",
    "AgiEnvironment",
    "AgiError",
    "AgiFailure",
    "AgiProtocolError",
    "AgiReply",
    "AgiSessionEnded",
    "AgiTimeout",
    "DeadChannel",
    "FastAgiReader",
    "Hangup",
    "InvalidCommand",
    "UsageError",
    "answer",
    "asyncagi_break",
    "channel_status",
    "collected_digits",
    "command_error",
    "decode_async_result",
    "exec_app",
    "get_data",
    "get_full_variable",
    "get_variable",
    "hang_up",
    "parse_environment",
    "parse_reply",
    "pressed_digit",
    "quote_argument",
    "set_variable",
    "stream_file",
    "variable_value",
    "verbose",
    "wait_for_digit",
]

#: Keys callers may press (DTMF), as AGI reports them (``result`` is their code point).
DTMF = frozenset("0123456789*#ABCD")

#: The longest line accepted from the PBX: a peer that sends more is not speaking AGI.
MAX_LINE = 64 * 1024

#: What ends a 520 usage block.
_USAGE_END = "520 End of proper usage."


# ---------------------------------------------------------------------------- errors


class AgiError(IvrError):
    """Base of the AGI transports' errors (kept beside the codec that raises them)."""


class AgiProtocolError(AgiError):
    """The PBX sent something that is not AGI; ``line`` is the offending line (or text)."""

    def __init__(self, problem: str, line: str) -> None:
        self.problem = problem
        self.line = line
        super().__init__(f"AGI: {problem}: {line[:200]!r}")


class AgiArgumentError(AgiError, ValueError):
    """A command cannot be formatted: ``argument`` names the bad argument."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        super().__init__(f"AGI command argument {argument!r}: {problem}")


class AgiCommandError(AgiError):
    """The PBX refused a command: ``reply`` says how (code 510, 511, 520...)."""

    def __init__(self, reply: AgiReply, command: str | None = None) -> None:
        self.reply = reply
        self.command = command
        self.code = reply.code
        about = f" ({command})" if command else ""
        super().__init__(f"AGI {reply.code}{about}: {reply.text}")


class InvalidCommand(AgiCommandError):
    """``510``: the PBX does not know the command."""


class DeadChannel(AgiCommandError):
    """``511``: the channel is gone (hung up) or taken over by something else."""


class UsageError(AgiCommandError):
    """``520``: wrong arguments; ``usage`` is Asterisk's help text for the command."""

    @property
    def usage(self) -> str:
        return self.reply.data or ""


class AgiFailure(AgiCommandError):
    """``200 result=-1``: the command failed, most often because the caller hung up."""


class AgiSessionEnded(AgiError):
    """A command that cannot be answered any more: the session ended (``reason``)."""

    def __init__(self, reason: AgiEnd, command: str | None = None) -> None:
        self.reason = reason
        self.command = command
        about = f" before {command!r} was answered" if command else ""
        super().__init__(f"AGI session ended ({reason}){about}")


class AgiTimeout(AgiError):
    """No reply to ``command`` within ``seconds``; the session is closed (a late reply
    could no longer be told from the next one's)."""

    def __init__(self, command: str, seconds: float) -> None:
        self.command = command
        self.seconds = seconds
        super().__init__(f"AGI: no reply to {command!r} within {seconds:g} s")


# ---------------------------------------------------------------------------- environment


def _known(value: str | None) -> str | None:
    """Asterisk writes ``unknown`` (or nothing) where it has no value."""
    return None if value in (None, "", "unknown") else value


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` variables a session opens with (``values`` has them all, without the
    ``agi_`` prefix). ``callerid``/``calleridname`` are None when Asterisk says
    ``unknown``; ``script`` is FastAGI's ``agi_network_script`` (None over AsyncAGI)."""

    channel: str
    uniqueid: str
    callerid: str | None
    calleridname: str | None
    language: str
    extension: str
    context: str
    request: str
    script: str | None
    values: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> AgiEnvironment:
        """From ``agi_*`` names (with or without the prefix) to values; ``agi_channel`` and
        ``agi_uniqueid`` are required (:class:`AgiProtocolError` names the missing one)."""
        plain = {k.removeprefix("agi_"): v for k, v in values.items()}
        for required in ("channel", "uniqueid"):
            if not plain.get(required):
                raise AgiProtocolError(
                    f"environment without agi_{required}", ", ".join(sorted(values)) or "(empty)"
                )
        return cls(
            channel=plain["channel"],
            uniqueid=plain["uniqueid"],
            callerid=_known(plain.get("callerid")),
            calleridname=_known(plain.get("calleridname")),
            language=plain.get("language") or "en",
            extension=plain.get("extension", ""),
            context=plain.get("context", ""),
            request=plain.get("request", ""),
            script=plain.get("network_script") or None,
            values=plain,
        )


def _environment_line(line: str) -> tuple[str, str]:
    key, sep, value = line.partition(":")
    if not sep or not key.startswith("agi_") or " " in key:
        raise AgiProtocolError("not an agi_* environment line", line)
    return key, value.removeprefix(" ")


def parse_environment(text: str | Iterable[str]) -> AgiEnvironment:
    """The environment from its lines (or the text of them, a blank line ending it), as
    FastAGI sends it and as AsyncAGIStart's ``Env`` holds it once URL-decoded."""
    lines = text.split("\n") if isinstance(text, str) else text
    values: dict[str, str] = {}
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            break
        key, value = _environment_line(line)
        values[key] = value
    return AgiEnvironment.from_values(values)


# ---------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply: ``code`` (200, 510, 511, 520), ``result`` (the text after ``result=``,
    ``""`` when empty or absent), ``data`` (the parenthesised part, or a 520's usage text),
    ``endpos`` (where a playback stopped, in samples), ``raw`` (the reply as received,
    lines joined by ``\\n``). ``text`` is what follows the code on a non-200 reply."""

    code: int
    result: str
    data: str | None = None
    endpos: int | None = None
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def text(self) -> str:
        first = self.raw.split("\n", 1)[0]
        return first[4:] if len(first) > 4 else first

    @property
    def number(self) -> int:
        """``result`` as an integer (:class:`AgiProtocolError` when it is not one)."""
        try:
            return int(self.result)
        except ValueError:
            raise AgiProtocolError("result is not a number", self.raw) from None


@dataclass(frozen=True, slots=True)
class Hangup:
    """FastAGI's bare ``HANGUP`` line: the caller hung up (commands now get ``511``)."""


_CODE = re.compile(r"(\d{3})([ -])(.*)")
# ``(data)`` may itself hold parentheses and spaces (a variable's value): the data is up to
# the last ``)`` that only ``key=value`` words follow.
_AFTER_RESULT = re.compile(r"(?: \((?P<data>.*)\))?(?P<extra>(?: [A-Za-z_]+=\S*)*)")


def parse_reply(text: str) -> AgiReply:
    """One reply's text (a single line, or a ``520-`` block's lines joined by ``\\n``).

    A trailing newline is ignored. :class:`AgiProtocolError` names a line that is no reply.
    """
    text = text.removesuffix("\n").replace("\r\n", "\n")
    lines = text.split("\n")
    first = lines[0]
    match = _CODE.fullmatch(first)
    if match is None:
        raise AgiProtocolError("not an AGI reply", first)
    code, dash, rest = int(match[1]), match[2], match[3]
    if code == 520 and dash == "-":
        if lines[-1] != _USAGE_END:
            raise AgiProtocolError("520 usage block without its end line", lines[-1])
        return AgiReply(520, "", "\n".join(lines[1:-1]), None, text)
    if len(lines) > 1 or dash == "-":
        raise AgiProtocolError("unexpected multi-line reply", text)
    if code != 200:
        return AgiReply(code, "", None, None, text)
    if not rest.startswith("result="):
        raise AgiProtocolError("200 reply without result=", first)
    result, _, after = rest[len("result=") :].partition(" ")
    tail = _AFTER_RESULT.fullmatch(f" {after}" if after else "")
    if tail is None:
        raise AgiProtocolError("cannot read the reply after result=", first)
    endpos: int | None = None
    for word in tail["extra"].split():
        key, _, value = word.partition("=")
        if key == "endpos":
            try:
                endpos = int(value)
            except ValueError:
                raise AgiProtocolError("endpos is not a number", first) from None
    return AgiReply(200, result, tail["data"], endpos, text)


def decode_async_result(result: str) -> str:
    """AsyncAGIExec's ``Result`` header (``200%20result%3D53%0A``) as reply text."""
    return unquote(result).removesuffix("\n")


def command_error(reply: AgiReply, command: str | None = None) -> AgiCommandError | None:
    """The error a non-200 reply means (None for a 200): 510, 511, 520, or another code."""
    if reply.ok:
        return None
    kinds: dict[int, type[AgiCommandError]] = {
        510: InvalidCommand,
        511: DeadChannel,
        520: UsageError,
    }
    return kinds.get(reply.code, AgiCommandError)(reply, command)


class FastAgiReader:
    """A FastAGI connection's input, sans I/O: bytes in, the :class:`AgiEnvironment` first,
    then :class:`AgiReply` and :class:`Hangup` items. Lines end in LF (CR LF accepted).

    After an :class:`AgiProtocolError` the reader is unusable: drop the connection.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._env: dict[str, str] | None = {}
        self._usage: list[str] | None = None

    @property
    def has_environment(self) -> bool:
        return self._env is None

    def feed(self, data: bytes) -> list[AgiEnvironment | AgiReply | Hangup]:
        """What the bytes received so far complete, in order."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            raise AgiProtocolError("line too long", self._buffer[:200].decode("utf-8", "replace"))
        out: list[AgiEnvironment | AgiReply | Hangup] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            item = self._line(line)
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: str) -> AgiEnvironment | AgiReply | Hangup | None:
        if self._env is not None:  # still reading the environment
            if line:
                key, value = _environment_line(line)
                self._env[key] = value
                return None
            env, self._env = AgiEnvironment.from_values(self._env), None
            return env
        if self._usage is not None:
            self._usage.append(line)
            if line != _USAGE_END:
                return None
            block, self._usage = "\n".join(self._usage), None
            return parse_reply(block)
        if line == "HANGUP":
            return Hangup()
        if line.startswith("520-"):
            self._usage = [line]
            return None
        if not line:
            return None  # a stray blank line carries nothing
        return parse_reply(line)


# ---------------------------------------------------------------------------- results


def _fail_on_minus_one(reply: AgiReply, command: str | None) -> int:
    error = command_error(reply, command)
    if error is not None:
        raise error
    number = reply.number
    if number < 0:
        raise AgiFailure(reply, command)
    return number


def pressed_digit(reply: AgiReply, command: str | None = None) -> str | None:
    """The key a STREAM FILE or WAIT FOR DIGIT reply reports (``result=53`` -> ``"5"``),
    None for none (``result=0``). ``result=-1`` raises :class:`AgiFailure` (hang-up or
    failure); a non-200 reply raises its :func:`command_error`."""
    number = _fail_on_minus_one(reply, command)
    if number == 0:
        return None
    digit = chr(number) if number < 0x110000 else ""
    if digit not in DTMF:
        raise AgiProtocolError("result is not a DTMF key", reply.raw)
    return digit


def collected_digits(reply: AgiReply, command: str | None = None) -> tuple[str, bool]:
    """What a GET DATA reply collected: ``(digits, timed_out)``; ``200 result=42`` ->
    ``("42", False)``, ``200 result= (timeout)`` -> ``("", True)``. ``result=-1`` raises
    :class:`AgiFailure`; a non-200 reply its :func:`command_error`."""
    error = command_error(reply, command)
    if error is not None:
        raise error
    if reply.result == "-1":
        raise AgiFailure(reply, command)
    if any(c not in DTMF for c in reply.result):
        raise AgiProtocolError("GET DATA result is not DTMF keys", reply.raw)
    return reply.result, reply.data == "timeout"


def variable_value(reply: AgiReply, command: str | None = None) -> str | None:
    """A GET (FULL) VARIABLE reply's value: the data of ``result=1``, None for ``result=0``
    (not set)."""
    number = _fail_on_minus_one(reply, command)
    return None if number == 0 else (reply.data or "")


# ---------------------------------------------------------------------------- commands

_SPECIAL = frozenset(' \t"\\')


def quote_argument(value: str, name: str = "argument", *, always: bool = False) -> str:
    """``value`` as one AGI argument: bare when it can be (unless ``always``), else in
    double quotes with ``"`` and ``\\`` escaped by a backslash (``""`` for empty). Line
    breaks cannot be sent."""
    if any(c in value for c in "\r\n\0"):
        raise AgiArgumentError(name, "contains a line break or NUL, which would end the command")
    if value and not always and not any(c in _SPECIAL for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _word(value: str, name: str) -> str:
    if not value or any(c.isspace() or c in '"\\' for c in value):
        raise AgiArgumentError(name, f"must be one non-empty word without quotes, got {value!r}")
    return value


def _keys(keys: str, name: str) -> str:
    bad = sorted({c for c in keys if c not in DTMF})
    if bad:
        raise AgiArgumentError(name, f"not DTMF keys: {''.join(bad)!r} (use 0-9, *, #, A-D)")
    return keys


def _whole(value: int, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AgiArgumentError(name, f"must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        upper = f" and {high}" if high is not None else ""
        raise AgiArgumentError(name, f"must be between {low}{upper}, got {value}")
    return value


def answer() -> str:
    return "ANSWER"


def stream_file(prompt: str, escape_digits: str = "") -> str:
    """Play ``prompt``; a key among ``escape_digits`` interrupts it (barge-in)."""
    keys = quote_argument(_keys(escape_digits, "escape_digits"))
    return f"STREAM FILE {_word(prompt, 'prompt')} {keys}"


def get_data(prompt: str, timeout_ms: int, max_digits: int) -> str:
    """Play ``prompt`` and collect up to ``max_digits`` keys (``#`` ends early), waiting
    ``timeout_ms`` after the last key."""
    timeout = _whole(timeout_ms, "timeout_ms", 1)
    most = _whole(max_digits, "max_digits", 1, 1024)
    return f"GET DATA {_word(prompt, 'prompt')} {timeout} {most}"


def wait_for_digit(ms: int) -> str:
    """Wait up to ``ms`` milliseconds for one key (``-1``: for ever)."""
    return f"WAIT FOR DIGIT {_whole(ms, 'ms', -1)}"


def set_variable(name: str, value: str) -> str:
    """Set channel variable ``name`` (``__NAME`` to be inherited) to ``value``."""
    if "=" in name:
        raise AgiArgumentError("name", f"a variable name cannot contain '=', got {name!r}")
    return f"SET VARIABLE {_word(name, 'name')} {quote_argument(value, 'value')}"


def get_variable(name: str) -> str:
    return f"GET VARIABLE {_word(name, 'name')}"


def get_full_variable(expression: str) -> str:
    """Evaluate a dialplan expression (``${CALLERID(num)}``)."""
    return f"GET FULL VARIABLE {quote_argument(expression, 'expression', always=True)}"


def hang_up() -> str:
    return "HANGUP"


def exec_app(app: str, data: str = "") -> str:
    """Run dialplan application ``app`` with ``data`` (its comma-separated arguments)."""
    return f"EXEC {_word(app, 'app')} {quote_argument(data, 'data')}"


def verbose(message: str, level: int = 1) -> str:
    return f"VERBOSE {quote_argument(message, 'message')} {_whole(level, 'level', 1, 4)}"


def channel_status() -> str:
    return "CHANNEL STATUS"


def asyncagi_break() -> str:
    """End an AsyncAGI session: the channel leaves ``AGI()`` and the dialplan goes on."""
    return "ASYNCAGI BREAK"


# ---------------------------------------------------------------------------- the channel


class AgiEnd(StrEnum):
    """Why an AGI session ended.

    ``hangup``: the PBX said the caller hung up (FastAGI's ``HANGUP`` line). ``ended``: the
    PBX ended the session (the FastAGI connection closed, AsyncAGIEnd): the caller hung up
    or the channel left ``AGI()`` (a Redirect). ``closed``: this side closed it.
    ``failed``: a protocol error, a command that timed out, or the AMI link failing.
    While a flow still runs, any end it did not ask for is the caller hanging up for it.
    """

    HANGUP = "hangup"
    ENDED = "ended"
    CLOSED = "closed"
    FAILED = "failed"


class AgiChannel(Protocol):
    """One call's AGI session, over FastAGI or AsyncAGI alike.

    Commands run one at a time in the order sent; :meth:`send`'s Deferred fires with the
    :class:`AgiReply` (any code: :func:`command_error` and the result helpers above say
    what it means) or fails with :class:`AgiSessionEnded`, :class:`AgiTimeout`,
    :class:`AgiProtocolError` or the transport's own error. ``closed`` fires once, with an
    :class:`AgiEnd`, when the session is over; commands still waiting then fail.
    """

    @property
    def env(self) -> AgiEnvironment: ...

    @property
    def closed(self) -> Deferred[AgiEnd]: ...

    def send(self, command: str, timeout: float | None = None) -> Deferred[AgiReply]:
        """Send one command (formatted by the functions above); ``timeout`` in seconds
        overrides the transport's default wait for its reply (long prompts, GET DATA)."""
        ...

    def close(self) -> None:
        """End the session and leave the channel to the dialplan (FastAGI: close the
        connection; AsyncAGI: ``ASYNCAGI BREAK``). Hanging the caller up is
        ``send(hang_up())``."""
        ...
