"""The Asterisk Manager Interface of the simulator, sans I/O: sessions (login, event
masks), actions in, responses and events out. The Twisted server only moves bytes."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cti.ami.codec import Message

from .engine import Channel, ChannelError, Dial, Pbx, Queue, QueueMember, Scheduler
from .frames import Headers, bridge_block, timestamp
from .settings import Settings

UNKNOWN_ACTION = "Invalid/unknown command: {}. Use Action: ListCommands to show available commands."
PRE_LOGIN_ACTIONS = {"login", "challenge", "logoff"}
AUTH_FAILURE_DELAY = 1.0  # Asterisk answers a bad login after about a second, then closes


@dataclass(frozen=True, slots=True)
class Send:
    """Write one frame to a session."""

    session: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Close:
    """Close a session's connection (after what was sent to it)."""

    session: int


Output = Send | Close


@dataclass(eq=False)
class Session:
    id: int
    peer: str
    authenticated: bool = False
    #: Event classes this session receives; None = all.
    events: frozenset[str] | None = None
    challenge: str | None = None
    closing: bool = False


def parse_event_mask(value: str) -> frozenset[str] | None:
    """``Events:`` of Login / the ``Events`` action: on, off, or a list of classes."""
    low = value.strip().lower()
    if low in ("on", "yes", "true", "all", "1"):
        return None
    if low in ("off", "no", "false", "0", "none", ""):
        return frozenset()
    return frozenset(part.strip() for part in low.split(",") if part.strip())


def parse_callerid(text: str) -> tuple[str, str]:
    """``"Name" <number>`` / ``Name <number>`` / ``<number>`` / ``number`` -> (num, name)."""
    m = re.fullmatch(r'\s*(?:"([^"]*)"|([^<]*?))\s*<([^>]*)>\s*', text)
    if m:
        name = m.group(1) if m.group(1) is not None else m.group(2)
        return m.group(3) or "<unknown>", name or "<unknown>"
    text = text.strip()
    return (text, "<unknown>") if text else ("<unknown>", "<unknown>")


class ManagerCore:
    """The whole simulated Asterisk as seen over AMI. Feed it connections, parsed actions
    and the time; it returns :class:`Send`/:class:`Close` outputs."""

    def __init__(self, settings: Settings, *, now: float, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng if rng is not None else random.Random(settings.seed)
        self.scheduler = Scheduler(now)
        self.pbx = Pbx(settings, self.scheduler, self.rng, self._broadcast)
        self.sessions: dict[int, Session] = {}
        self._next_session = 1
        self._out: list[Output] = []
        self.booted = now
        self._actions: dict[str, Callable[[Session, Message], None]] = {
            "login": self._login,
            "challenge": self._challenge,
            "logoff": self._logoff,
            "ping": self._ping,
            "events": self._events,
            "originate": self._originate,
            "redirect": self._redirect,
            "bridge": self._bridge,
            "hangup": self._hangup,
            "setvar": self._setvar,
            "agi": self._agi,
            "blindtransfer": self._blind_transfer,
            "atxfer": self._atxfer,
            "status": self._status,
            "coreshowchannels": self._core_show_channels,
            "bridgelist": self._bridge_list,
            "bridgeinfo": self._bridge_info,
            "queuestatus": self._queue_status,
            "queuesummary": self._queue_summary,
            "queuepause": self._queue_pause,
            "queueadd": self._queue_add,
            "queueremove": self._queue_remove,
            "devicestatelist": self._device_state_list,
            "extensionstatelist": self._extension_state_list,
        }

    # ------------------------------------------------------------ driving

    def connect(self, now: float, peer: str = "127.0.0.1:0") -> int:
        """A client connected (the server already wrote the banner)."""
        self.scheduler.advance(now)
        sid = self._next_session
        self._next_session += 1
        self.sessions[sid] = Session(sid, peer)
        return sid

    def disconnect(self, sid: int) -> None:
        self.sessions.pop(sid, None)

    def receive(self, sid: int, message: Message, now: float) -> list[Output]:
        """One frame from a client; returns what to write (its response, events)."""
        self.scheduler.advance(now)
        session = self.sessions.get(sid)
        if session is not None and not session.closing:
            self._dispatch(session, message)
        return self.take()

    def advance(self, now: float) -> list[Output]:
        """Run the timers due by ``now``."""
        self.scheduler.advance(now)
        return self.take()

    def run(self, now: float, fn: Callable[[], None]) -> list[Output]:
        """Run ``fn`` (an I/O callback into the PBX, e.g. FastAGI data) at ``now``."""
        self.scheduler.advance(now)
        fn()
        return self.take()

    def next_deadline(self) -> float | None:
        return self.scheduler.next_deadline()

    def take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ output helpers

    def _broadcast(self, headers: Headers) -> None:
        klass = headers[1][1].split(",")[0].lower() if len(headers) > 1 else ""
        for session in self.sessions.values():
            if (
                session.authenticated
                and not session.closing
                and (session.events is None or klass in session.events)
            ):
                self._out.append(Send(session.id, headers))

    def _respond(
        self, session: Session | None, m: Message, response: str, *fields: tuple[str, str]
    ) -> None:
        if session is None:  # an internal originate (traffic generator): nobody to answer
            return
        headers: Headers = [("Response", response)]
        if m.action_id is not None:
            headers.append(("ActionID", m.action_id))
        headers.extend(fields)
        self._out.append(Send(session.id, headers))

    def _error(self, session: Session | None, m: Message, text: str) -> None:
        self._respond(session, m, "Error", ("Message", text))

    def _success(self, session: Session | None, m: Message, text: str) -> None:
        self._respond(session, m, "Success", ("Message", text))

    def _list(
        self,
        session: Session,
        m: Message,
        start: str,
        complete: str,
        items: list[Headers],
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        """EventList framing: start response, items tagged with ActionID, ``<X>Complete``."""
        self._respond(session, m, "Success", ("EventList", "start"), ("Message", start))
        aid = [("ActionID", m.action_id)] if m.action_id is not None else []
        self._out.extend(Send(session.id, item) for item in items)
        done: Headers = [
            ("Event", complete),
            *aid,
            ("EventList", "Complete"),
            ("ListItems", str(len(items))),
            *extra,
        ]
        self._out.append(Send(session.id, done))

    def _item(self, m: Message, name: str, body: Headers, *, action_id_first: bool) -> Headers:
        aid = [("ActionID", m.action_id)] if m.action_id is not None else []
        return [("Event", name), *aid, *body] if action_id_first else [("Event", name), *body, *aid]

    def _security_event(self, session: Session, name: str, severity: str, extra: Headers) -> None:
        tv = (
            datetime.fromtimestamp(self.scheduler.now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            + "+0000"
        )
        self._broadcast(
            [
                ("Event", name),
                ("Privilege", "security,all"),
                ("Timestamp", timestamp(self.scheduler.now)),
                ("EventTV", tv),
                ("Severity", severity),
                ("Service", "AMI"),
                ("EventVersion", "1"),
                *extra,
                ("SessionID", f"0x{session.id:012x}"),
                ("LocalAddress", f"IPV4/TCP/{self.settings.host}/{self.settings.port}"),
                ("RemoteAddress", f"IPV4/TCP/{session.peer.replace(':', '/')}"),
                ("SessionTV", tv),
            ]
        )

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, session: Session, m: Message) -> None:
        action = m.get("Action")
        if not action:
            self._error(session, m, "Missing action in request")
            return
        key = action.lower()
        if not session.authenticated and key not in PRE_LOGIN_ACTIONS:
            self._error(session, m, "Permission denied")
            return
        handler = self._actions.get(key)
        if handler is None:
            self._error(session, m, UNKNOWN_ACTION.format(action))
            self._security_event(
                session,
                "RequestBadFormat",
                "Error",
                [("RequestType", f"Action: {action}"), ("AccountID", self.settings.username)],
            )
            return
        handler(session, m)

    # ------------------------------------------------------------ session actions

    def _login(self, session: Session, m: Message) -> None:
        if session.authenticated:
            self._success(session, m, "Already authenticated")
            return
        ok = m.get("Username") == self.settings.username
        if (m.get("AuthType") or "").lower() == "md5":
            expected = hashlib.md5(
                f"{session.challenge}{self.settings.secret}".encode()
            ).hexdigest()
            ok = ok and session.challenge is not None and m.get("Key") == expected
        else:
            ok = ok and m.get("Secret") == self.settings.secret
        if not ok:
            session.closing = True

            def refuse() -> None:
                self._error(session, m, "Authentication failed")
                self._out.append(Close(session.id))

            self.scheduler.call_later(AUTH_FAILURE_DELAY, refuse)
            return
        session.authenticated = True
        if m.get("Events") is not None:
            session.events = parse_event_mask(m["Events"])
        self._success(session, m, "Authentication accepted")
        up = str(int(self.scheduler.now - self.booted))
        if session.events is None or "system" in session.events:
            self._out.append(
                Send(
                    session.id,
                    [
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", up),
                        ("LastReload", up),
                        ("Status", "Fully Booted"),
                    ],
                )
            )
        self._security_event(
            session,
            "SuccessfulAuth",
            "Informational",
            [("AccountID", self.settings.username), ("UsingPassword", "0")],
        )

    def _challenge(self, session: Session, m: Message) -> None:
        if (m.get("AuthType") or "").lower() != "md5":
            self._error(session, m, "Must specify AuthType")
            return
        session.challenge = str(self.rng.randrange(10**8, 10**9))
        self._respond(session, m, "Success", ("Challenge", session.challenge))

    def _logoff(self, session: Session, m: Message) -> None:
        self._respond(session, m, "Goodbye", ("Message", "Thanks for all the fish."))
        session.closing = True
        self._out.append(Close(session.id))

    def _ping(self, session: Session, m: Message) -> None:
        self._respond(
            session, m, "Success", ("Ping", "Pong"), ("Timestamp", timestamp(self.scheduler.now))
        )

    def _events(self, session: Session, m: Message) -> None:
        session.events = parse_event_mask(m.get("EventMask") or "off")
        self._respond(
            session, m, "Success", ("Events", "Off" if session.events == frozenset() else "On")
        )

    # ------------------------------------------------------------ call actions

    def _channel(self, session: Session, m: Message, key: str, message: str) -> Channel | None:
        name = m.get(key) or ""
        try:
            return self.pbx.find(name)
        except ChannelError:
            self._error(session, m, message.format(name))
            return None

    def originate(self, m: Message, on_start: Callable[[Channel], None] | None = None) -> None:
        """Originate from inside the PBX (no session); ``on_start`` gets the ;1 leg."""
        self._originate(None, m, on_start)

    def _originate(
        self, session: Session | None, m: Message, on_start: Callable[[Channel], None] | None = None
    ) -> None:
        target = m.get("Channel") or ""
        app = m.get("Application")
        exten, context, priority = m.get("Exten"), m.get("Context"), m.get("Priority")
        if not target:
            self._error(session, m, "Channel not specified")
            return
        if not app and not (exten and context and priority):
            self._error(session, m, "Originate with 'Exten' requires 'Context' and 'Priority'")
            return
        if not target.startswith("Local/") or "@" not in target:
            self._error(session, m, "Originate failed: the simulator only has Local channels")
            return
        variables: dict[str, str] = {}
        for spec in m.get_all("Variable"):
            for pair in spec.split(","):
                name, sep, value = pair.partition("=")
                if sep and name:
                    variables[name] = value
        cid = parse_callerid(m["CallerID"]) if m.get("CallerID") else None
        try:
            timeout = int(m.get("Timeout") or 30000) / 1000
        except ValueError:
            timeout = 30.0
        is_async = (m.get("Async") or "").lower() in ("true", "yes", "1")
        if is_async:
            self._success(session, m, "Originate successfully queued")
        action_id = m.action_id
        ids = (m.get("ChannelId"), m.get("OtherChannelId"))
        pbx = self.pbx

        def report(dial: Dial, ok: bool) -> None:
            one = dial.leg
            fields: Headers = [("ActionID", action_id)] if action_id is not None else []
            fields += [
                ("Response", "Success" if ok else "Failure"),
                ("Channel", one.name if ok else target),
                ("Context", context or ""),
                ("Exten", exten or ""),
                ("Reason", "4" if ok else "3"),
                ("Uniqueid", one.uniqueid if ok else (ids[0] or "<unknown>")),
                ("CallerIDNum", cid[0] if cid else "<unknown>"),
                ("CallerIDName", cid[1] if cid else "<unknown>"),
            ]
            if ok:
                fields += [
                    (f"ChanVariable({one.name})", f"{v}={one.variables.get(v, '')}")
                    for v in self.settings.channelvars
                ]
            pbx.emit("OriginateResponse", "call,all", fields)
            if not is_async and session is not None and session.id in self.sessions:
                if ok:
                    self._success(session, m, "Originate successfully queued")
                else:
                    self._error(session, m, "Originate failed")

        def start() -> None:
            dial = pbx.dial_local(
                target, caller=None, ids=ids, first_app="AppDial2", cid=cid, variables=variables
            )
            one = dial.leg
            pbx.emit_dial("DialBegin", dial, [("DialString", dial.dialstring)])

            def answered() -> None:
                report(dial, True)
                if app:
                    pbx.run_application(one, app, m.get("Data") or "")
                else:
                    one.after_bridge = "continue"
                    pbx.start_dialplan(one, context or "", exten or "", int(priority or 1))

            dial.on_answer = answered
            dial.on_fail = lambda cause: report(dial, False)
            dial.timer = pbx.clock.call_later(
                timeout, lambda: pbx.fail_dial(dial, 19) if one.dial is dial else None
            )
            two = one.partner
            assert two is not None
            two.after_bridge = "continue"
            pbx.start_dialplan(two, two.context, two.exten, 1)
            if on_start is not None:
                on_start(one)

        # Asterisk queues the originate to a thread: the response goes out first.
        self.scheduler.call_later(0, start)

    def _redirect(self, session: Session, m: Message) -> None:
        for key, text in (
            ("Channel", "Channel not specified"),
            ("Context", "Context not specified"),
            ("Exten", "Exten not specified"),
        ):
            if not m.get(key):
                self._error(session, m, text)
                return
        priority = m.get("Priority") or "1"
        if not priority.isdigit():
            self._error(session, m, "Invalid priority")
            return
        ch = self._channel(session, m, "Channel", "Channel does not exist: {}")
        if ch is None:
            return
        self._success(session, m, "Redirect successful")
        self.pbx.redirect(ch, m["Context"], m["Exten"], int(priority))

    def _bridge(self, session: Session, m: Message) -> None:
        if not m.get("Channel1") or not m.get("Channel2"):
            self._error(session, m, "Missing channel parameter in request")
            return
        one = self._channel(session, m, "Channel1", "Channel1 does not exist: {}")
        if one is None:
            return
        two = self._channel(session, m, "Channel2", "Channel2 does not exist: {}")
        if two is None:
            return
        if one is two:
            self._error(session, m, "Unable to bridge a channel to itself")
            return
        self._success(session, m, "Channels have been bridged")
        self.pbx.bridge_action(one, two)

    def _hangup(self, session: Session, m: Message) -> None:
        if not m.get("Channel"):
            self._error(session, m, "No channel specified")
            return
        ch = self._channel(session, m, "Channel", "No such channel")
        if ch is None:
            return
        cause = m.get("Cause") or "0"
        self._success(session, m, "Channel Hungup")
        self.pbx.hangup(ch, int(cause) if cause.isdigit() else 0, request=True)

    def _setvar(self, session: Session, m: Message) -> None:
        # Asterisk also sets globals without Channel; the simulator's callers need channels.
        if not m.get("Variable"):
            self._error(session, m, "No variable specified")
            return
        ch = self._channel(session, m, "Channel", "No such channel")
        if ch is None:
            return
        self.pbx.set_var(ch, m["Variable"], m.get("Value") or "")
        self._success(session, m, "Variable Set")

    def _transferer(self, session: Session, m: Message, failed: str) -> Channel | None:
        """The bridged channel a transfer action names, or None (error answered)."""
        if not m.get("Channel"):
            self._error(session, m, "No channel specified")
            return None
        if not m.get("Exten"):
            self._error(session, m, "No extension specified")
            return None
        ch = self._channel(session, m, "Channel", "No such channel")
        if ch is not None and self.pbx.transfer_peer(ch) is None:
            self._error(session, m, failed)
            return None
        return ch

    def _blind_transfer(self, session: Session, m: Message) -> None:
        ch = self._transferer(session, m, "Transfer failed")
        if ch is not None:
            self._success(session, m, "Transfer succeeded")
            self.pbx.blind_transfer(ch, m.get("Context") or ch.context, m["Exten"])

    def _atxfer(self, session: Session, m: Message) -> None:
        ch = self._transferer(session, m, "Atxfer failed")
        if ch is not None:
            self._success(session, m, "Atxfer successfully queued")
            self.pbx.attended_transfer(ch, m.get("Context") or ch.context, m["Exten"])

    def _agi(self, session: Session, m: Message) -> None:
        if not m.get("Channel") or not m.get("Command"):
            self._error(session, m, "Channel and Command are required")
            return
        ch = self._channel(session, m, "Channel", "Channel {} does not exist.")
        if ch is None:
            return
        if not self.pbx.agi_command(ch, m["Command"], m.get("CommandID") or ""):
            self._error(session, m, "Failed to add AGI command to queue")
            return
        self._success(session, m, "Added AGI command to queue")

    # ------------------------------------------------------------ listings

    def _duration(self, ch: Channel) -> str:
        """Since the channel was created; after an AMI ``Bridge``, since the bridge."""
        secs = int(self.scheduler.now - ch.created)
        return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"

    @staticmethod
    def _variables(ch: Channel) -> Headers:
        """``Status AllVariables``: BRIDGEPEER (the other channels of its bridge) first."""
        out: Headers = []
        if ch.bridge is not None:
            peers = ",".join(c.name for c in ch.bridge.channels if c is not ch)
            out.append(("Variable", f"BRIDGEPEER={peers}"))
        out += [("Variable", f"{k}={v}") for k, v in ch.variables.items()]
        return out

    def _status(self, session: Session, m: Message) -> None:
        pbx = self.pbx
        if m.get("Channel"):
            ch = self._channel(session, m, "Channel", "No such channel")
            if ch is None:
                return
            channels = [ch]
        else:
            channels = list(pbx.channels.values())
        all_vars = (m.get("AllVariables") or "").lower() in ("true", "yes", "1")
        items = []
        for ch in channels:
            body = [
                *pbx.block(ch),
                ("Type", "Local"),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", ch.conn_num),
                ("EffectiveConnectedLineName", ch.conn_name),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge.uniqueid if ch.bridge else ""),
                # No application (bridged by AMI): Asterisk prints two NULL pointers.
                ("Application", ch.app or "(null)"),
                ("Data", ch.app_data if ch.app else "(null)"),
                ("Nativeformats", "(slin)"),
                ("Readformat", "slin"),
                ("Readtrans", ""),
                ("Writeformat", "slin"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(int(self.scheduler.now - ch.created))),
            ]
            if all_vars:
                body += self._variables(ch)
            items.append(
                [
                    ("Event", "Status"),
                    ("Privilege", "Call"),
                    *self._item(m, "Status", body, action_id_first=False)[1:],
                ]
            )
        self._list(
            session,
            m,
            "Channel status will follow",
            "StatusComplete",
            items,
            [("Items", str(len(items)))],
        )

    def _core_show_channels(self, session: Session, m: Message) -> None:
        items = [
            self._item(
                m,
                "CoreShowChannel",
                [
                    *self.pbx.block(ch),
                    ("Application", ch.app),
                    ("ApplicationData", ch.app_data),
                    ("Duration", self._duration(ch)),
                    ("BridgeId", ch.bridge.uniqueid if ch.bridge else ""),
                ],
                action_id_first=True,
            )
            for ch in self.pbx.channels.values()
        ]
        self._list(session, m, "Channels will follow", "CoreShowChannelsComplete", items)

    def _bridge_list(self, session: Session, m: Message) -> None:
        items = [
            self._item(m, "BridgeListItem", bridge_block(b), action_id_first=True)
            for b in self.pbx.bridges.values()
        ]
        self._list(session, m, "Bridge listing will follow", "BridgeListComplete", items)

    def _bridge_info(self, session: Session, m: Message) -> None:
        bid = m.get("BridgeUniqueid")
        if not bid:
            self._error(session, m, "Bridge identifier not provided")
            return
        bridge = self.pbx.bridges.get(bid)
        if bridge is None:
            self._error(session, m, f"Bridge {bid} not found")
            return
        items = [
            self._item(m, "BridgeInfoChannel", self.pbx.block(ch), action_id_first=True)
            for ch in bridge.channels
        ]
        self._list(
            session,
            m,
            "Bridge channel listing will follow",
            "BridgeInfoComplete",
            items,
            bridge_block(bridge),
        )

    def _selected_queues(self, m: Message) -> list[Queue]:
        name = m.get("Queue")
        return [q for q in self.pbx.queues.values() if not name or q.name == name]

    def _queue_status(self, session: Session, m: Message) -> None:
        pbx = self.pbx
        items: list[Headers] = []
        for q in self._selected_queues(m):
            done = q.completed or 1
            params = [
                ("Queue", q.name),
                ("Max", "0"),
                ("Strategy", q.settings.strategy),
                ("Calls", str(len(q.calls))),
                ("Holdtime", str(round(q.total_hold / done))),
                ("TalkTime", str(round(q.total_talk / done))),
                ("Completed", str(q.completed)),
                ("Abandoned", str(q.abandoned)),
                ("ServiceLevel", "0"),
                ("ServicelevelPerf", "0.0"),
                ("ServicelevelPerf2", "0.0"),
                ("Weight", "0"),
            ]
            items.append(self._item(m, "QueueParams", params, action_id_first=False))
            for member in q.members:
                if m.get("Member") and m.get("Member") != member.interface:
                    continue
                items.append(
                    self._item(
                        m,
                        "QueueMember",
                        pbx.member_fields(q, member, listing=True),
                        action_id_first=False,
                    )
                )
            for pos, call in enumerate(q.calls, 1):
                ch = call.caller
                entry = [
                    ("Queue", q.name),
                    ("Position", str(pos)),
                    ("Channel", ch.name),
                    ("Uniqueid", ch.uniqueid),
                    ("CallerIDNum", ch.cid_num),
                    ("CallerIDName", ch.cid_name),
                    ("ConnectedLineNum", ch.conn_num),
                    ("ConnectedLineName", ch.conn_name),
                    ("Wait", str(int(self.scheduler.now - call.joined))),
                    ("Priority", "0"),
                ]
                items.append(self._item(m, "QueueEntry", entry, action_id_first=False))
        self._list(session, m, "Queue status will follow", "QueueStatusComplete", items)

    def _queue_summary(self, session: Session, m: Message) -> None:
        items = [
            self._item(m, "QueueSummary", self.pbx.queue_summary(q), action_id_first=False)
            for q in self._selected_queues(m)
        ]
        self._list(session, m, "Queue summary will follow", "QueueSummaryComplete", items)

    def _device_state_list(self, session: Session, m: Message) -> None:
        """The device state cache: app_queue's ``Queue:*`` pseudo-devices only. Asterisk
        never caches Local channel device states, so busy agents are not listed
        (recording 13); ExtensionStateList is what shows them."""
        items = [
            self._item(m, "DeviceStateChange", [("Device", d), ("State", s)], action_id_first=True)
            for d, s in self.pbx.device_states.items()
        ]
        self._list(session, m, "Device State Changes will follow", "DeviceStateListComplete", items)

    def _extension_state_list(self, session: Session, m: Message) -> None:
        items = [
            self._item(m, "ExtensionStatus", self.pbx.extension_fields(h), action_id_first=True)
            for h in self.settings.hints
        ]
        self._list(
            session, m, "Extension Statuses will follow", "ExtensionStateListComplete", items
        )

    # ------------------------------------------------------------ queue administration

    def _members(self, m: Message) -> list[tuple[Queue, QueueMember]]:
        iface = m.get("Interface")
        return [
            (q, mem)
            for q in self._selected_queues(m)
            for mem in q.members
            if mem.interface == iface
        ]

    def _queue_pause(self, session: Session, m: Message) -> None:
        if not m.get("Interface") or not m.get("Paused"):
            self._error(session, m, "Need 'Interface' and 'Paused' parameters.")
            return
        found = self._members(m)
        if not found:
            self._error(session, m, "Interface not found")
            return
        paused = m["Paused"].lower() in ("true", "yes", "1")
        self._success(session, m, f"Interface {'paused' if paused else 'unpaused'} successfully")
        for queue, member in found:
            self.pbx.set_paused(queue, member, paused, m.get("Reason") or "")

    def _queue_add(self, session: Session, m: Message) -> None:
        if not m.get("Queue") or not m.get("Interface"):
            self._error(session, m, "'Queue' and 'Interface' not specified.")
            return
        queue = self.pbx.queues.get(m["Queue"])
        if queue is None:
            self._error(session, m, "Unable to add interface to queue: No such queue")
            return
        if self._members(m):
            self._error(session, m, "Unable to add interface: Already there")
            return
        penalty = m.get("Penalty") or "0"
        self._success(session, m, "Added interface to queue")
        self.pbx.add_member(
            queue,
            m["Interface"],
            m.get("MemberName") or "",
            int(penalty) if penalty.isdigit() else 0,
            (m.get("Paused") or "").lower() in ("true", "yes", "1"),
            m.get("Reason") or "",
        )

    def _queue_remove(self, session: Session, m: Message) -> None:
        if not m.get("Queue") or not m.get("Interface"):
            self._error(session, m, "Need 'Queue' and 'Interface' parameters.")
            return
        if m["Queue"] not in self.pbx.queues:
            self._error(session, m, "Unable to remove interface from queue: No such queue")
            return
        found = self._members(m)
        if not found:
            self._error(session, m, "Unable to remove interface: Not there")
            return
        self._success(session, m, "Removed interface from queue")
        for queue, member in found:
            self.pbx.remove_member(queue, member)


__all__ = ["Close", "ManagerCore", "Output", "Send", "parse_callerid", "parse_event_mask"]
