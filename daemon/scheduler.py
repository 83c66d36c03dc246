"""Sending notes on time: a scheduler thread, a ledger of every sounding note, and the rule that a
note decoded after its send time is dropped, never sent late (DESIGN §6).

Port loss: a send that raises marks the output lost (so does ``mark_lost``, from the port
watchdog). While it is lost nothing is sent and the ledger stays as it was when the port went (the
notes the receiver may still be sounding); the clock goes on and events fall due unsent. ``restore``
(the port is back) sends the ledger's note_offs and CC 123 on every output channel, then sending
resumes."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NOTE_ON, NOTE_OFF = 0x90, 0x80
ALL_NOTES_OFF_CC = 123


class Ledger:
    """Every note_on sent and not yet closed, as (channel, pitch) -> count."""

    def __init__(self):
        self.sounding: dict[tuple[int, int], int] = {}

    def on(self, ch: int, pitch: int) -> None:
        self.sounding[(ch, pitch)] = self.sounding.get((ch, pitch), 0) + 1

    def off(self, ch: int, pitch: int) -> bool:
        n = self.sounding.get((ch, pitch), 0)
        if n <= 1:
            self.sounding.pop((ch, pitch), None)
        else:
            self.sounding[(ch, pitch)] = n - 1
        return n > 0

    def closing_messages(self) -> list[list[int]]:
        msgs = []
        for (ch, pitch), n in sorted(self.sounding.items()):
            msgs.extend([[NOTE_OFF | ch, pitch, 0]] * n)
        self.sounding.clear()
        return msgs

    def __len__(self) -> int:
        return sum(self.sounding.values())


@dataclass(order=True)
class Event:
    tick: float  # song position in 16ths
    order: int  # note_offs before note_ons at the same tick, then arrival order
    seq: int
    msg: list = field(compare=False)
    bar: int = field(compare=False, default=-1)
    generation: int = field(compare=False, default=0)


class Scheduler:
    """Sends events at the wall time of their song tick (plus a latency offset). A note_on decoded
    after its send time is dropped and its bar counted late; its note_off is dropped with it.
    note_offs are always sent (late rather than never)."""

    def __init__(self, transport, send, *, latency_s: float = 0.0, now=None, tolerance_s: float = 0.002,
                 on_late=None, on_lost=None, channels=range(16)):
        self.transport, self._send = transport, send
        self.channels = tuple(channels)  # ours: CC 123 at shutdown goes to these only (not a shared synth's others)
        self.latency_s, self.tolerance_s = latency_s, tolerance_s
        self.now = now or transport.now
        self.on_late = on_late or (lambda bar: None)
        self.on_lost = on_lost or (lambda reason: None)  # called (under the lock) when the output is lost
        self.lost: str | None = None  # why the output is lost; None while it works
        self.lost_messages = 0  # messages that fell due while the output was lost
        # JACK: rtmidi's send spins, holding the GIL, once its ring buffer is full (a dead server or
        # client never drains it). The port watchdog confirms the server runs; past this many sends
        # without a confirmation the output counts as lost (None: no such guard).
        self.max_unconfirmed: int | None = None
        self.unconfirmed = 0
        self.trace: list | None = None  # a list: (due, sent, msg) of every scheduled message sent
        self.ledger = Ledger()
        self.heap: list[Event] = []
        self.cv = threading.Condition()
        self.seq = itertools.count()
        self.dropped: set[tuple[int, int, int]] = set()  # (generation, channel, pitch) whose note_on was dropped
        self.late_notes = 0
        self.sent = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="vqcpc-scheduler", daemon=True)

    # -- thread control ---------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, block: bool = True) -> None:
        with self.cv:
            self._stop = True
            self.cv.notify_all()
        if block and self.thread.is_alive():
            self.thread.join(timeout=2.0)
        self.panic(self.channels)

    # -- producers --------------------------------------------------------------------------------
    def add(self, tick: float, msg: list[int], bar: int = -1, generation: int | None = None) -> None:
        """Schedule ``msg`` at song position ``tick``; ``generation``: the transport generation it
        belongs to (events of an older one, from before a stop or jump, are discarded)."""
        order = 0 if (msg[0] & 0xF0) == NOTE_OFF else 1
        gen = self.transport.generation if generation is None else generation
        ev = Event(tick, order, next(self.seq), msg, bar, gen)
        due = self.transport.time_of(tick)
        with self.cv:
            if due is not None and self.now() > due + self.latency_s + self.tolerance_s:
                self._due(ev, late=True)  # decoded after its send time: a note_on is dropped
                return
            heapq.heappush(self.heap, ev)
            self.cv.notify_all()

    def send_now(self, msg: list[int]) -> None:
        """Outside the schedule (bypass echo, panic); still recorded in the ledger."""
        with self.cv:
            self._emit(msg)

    def flush(self) -> None:
        """Stop, loop jump: forget what is pending and close every sounding note now (while the
        output is lost the ledger keeps them for its return)."""
        with self.cv:
            self.heap.clear()
            self.dropped.clear()
            self._close_ledger()
            self.cv.notify_all()

    def panic(self, channels=range(16)) -> None:
        with self.cv:
            self.heap.clear()
            self._close_ledger()
            for ch in channels:
                self._raw([0xB0 | ch, ALL_NOTES_OFF_CC, 0])

    # -- port loss --------------------------------------------------------------------------------
    def mark_lost(self, reason: str) -> bool:
        """The output is gone (the watchdog saw it): stop sending, keep the ledger. True when it was
        working until now."""
        with self.cv:
            return self._lose(reason)

    def confirm(self) -> None:
        """From the watchdog: the MIDI system is alive, what was sent has been taken."""
        self.unconfirmed = 0

    def restore(self, channels, send=None) -> tuple[int, list[int]]:
        """The output is back (``send``: its new send function): the ledger's note_offs, then CC 123
        on ``channels`` and on every channel the ledger held, then sending resumes. Returns the
        number of note_offs and the CC 123 channels sent."""
        with self.cv:
            if send is not None:
                self._send = send
            self.lost, self.unconfirmed = None, 0
            chans = sorted(set(channels) | {ch for ch, _ in self.ledger.sounding})
            n = self._close_ledger()
            sent = [ch for ch in chans if self._raw([0xB0 | ch, ALL_NOTES_OFF_CC, 0])]
            self.cv.notify_all()
            return n, sent

    def _lose(self, reason: str) -> bool:
        if self.lost is not None:
            return False
        self.lost = reason
        log.info("MIDI output lost: %s", reason)
        self.on_lost(reason)
        return True

    def _close_ledger(self) -> int:
        """Send the ledger's note_offs; what cannot be sent (the output is lost) stays in it."""
        msgs = self.ledger.closing_messages()
        for i, msg in enumerate(msgs):
            if not self._raw(msg):
                for rest in msgs[i:]:
                    self.ledger.on(rest[0] & 0x0F, rest[1])
                return i
        return len(msgs)

    def pump(self) -> None:
        """Without the thread (a fake clock drives): send every event due by now."""
        with self.cv:
            while self.heap:
                ev = self.heap[0]
                if ev.generation != self.transport.generation:
                    heapq.heappop(self.heap)
                    continue
                due = self.transport.time_of(ev.tick)
                if due is None or due + self.latency_s > self.now():
                    return
                heapq.heappop(self.heap)
                self._due(ev, late=False, due=due + self.latency_s)

    def take_trace(self) -> list:
        """The (due, sent, msg) recorded since the last call (``trace`` on)."""
        with self.cv:
            out, self.trace = self.trace or [], ([] if self.trace is not None else None)
            return out

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        with self.cv:
            while not self._stop:
                if not self.heap:
                    self.cv.wait(0.1)
                    continue
                ev = self.heap[0]
                if ev.generation != self.transport.generation:  # from before a stop or jump
                    heapq.heappop(self.heap)
                    continue
                due = self.transport.time_of(ev.tick)
                if due is None:
                    self.cv.wait(0.01)
                    continue
                due += self.latency_s
                wait = due - self.now()
                if wait > 0.0002:
                    self.cv.wait(min(wait, 0.05))
                    continue
                heapq.heappop(self.heap)
                self._due(ev, late=False, due=due)  # it was on time when decoded: waking late is jitter

    def _due(self, ev: Event, late: bool, due: float | None = None) -> None:
        kind, ch, pitch = ev.msg[0] & 0xF0, ev.msg[0] & 0x0F, ev.msg[1]
        key = (ev.generation, ch, pitch)
        if kind == NOTE_ON and ev.msg[2] > 0:
            if late:
                self.dropped.add(key)
                self.late_notes += 1
                self.on_late(ev.bar)
                return
            self._emit(ev.msg, due)
        elif kind == NOTE_OFF:
            if key in self.dropped:
                self.dropped.discard(key)
                return
            self._emit(ev.msg, due)
        else:
            self._emit(ev.msg, due)

    def _emit(self, msg: list[int], due: float | None = None) -> None:
        if self.lost is not None:  # nothing goes out; the ledger keeps what sounded when the port went
            self.lost_messages += 1
            return
        kind, ch = msg[0] & 0xF0, msg[0] & 0x0F
        if kind == NOTE_ON and msg[2] > 0:
            self.ledger.on(ch, msg[1])  # kept even if this send fails: a note_off too many is harmless
        elif kind == NOTE_OFF or (kind == NOTE_ON and msg[2] == 0):
            if not self.ledger.off(ch, msg[1]):
                return  # nothing sounding there: no stray note_off
            if not self._raw(msg, due):
                self.ledger.on(ch, msg[1])  # not closed: its note_off goes out when the port returns
            return
        self._raw(msg, due)

    CONFIRM_WAIT_S = 1.0  # longer than the watchdog's round (0.1 s on JACK) plus its stall limit (0.5 s)

    def _await_confirm(self) -> bool:
        """``max_unconfirmed`` messages went out since the watchdog last saw the server run a cycle
        (a burst: a panic, hundreds of bypassed notes, a ledger closed at exit): wait, with the lock
        released, for its next word. True once it confirms; False when it finds the output lost
        meanwhile or says nothing for ``CONFIRM_WAIT_S`` (then the output is marked lost). On a live
        server this costs at most one watchdog round; a burst is never taken for a dead server."""
        deadline = time.monotonic() + self.CONFIRM_WAIT_S  # real waiting, whatever clock drives us
        while self.unconfirmed >= self.max_unconfirmed and self.lost is None:
            if time.monotonic() >= deadline:
                self._lose("no sign of life from the MIDI system")
                return False
            self.cv.wait(0.005)
        return self.lost is None

    def _raw(self, msg: list[int], due: float | None = None) -> bool:
        """Send one message; False (and the output marked lost) when it cannot go out."""
        if self.lost is not None:
            return False
        if self.max_unconfirmed is not None and self.unconfirmed >= self.max_unconfirmed and not self._await_confirm():
            return False
        try:
            self._send(msg)
        except Exception as err:  # a lost port must not kill the thread; the ledger keeps what sounds
            self._lose(f"send failed: {err}")
            return False
        self.sent += 1
        self.unconfirmed += 1
        if self.trace is not None and due is not None:
            self.trace.append((due, self.now(), msg))
        return True
