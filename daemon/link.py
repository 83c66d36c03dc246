"""The daemon's two ports, kept alive (DESIGN §6: on port loss, the ledger's note_offs and CC 123
are sent when the port comes back).

The output counts as lost when a send raises, when the JACK server stops (or our client leaves
it), or when the port it was connected to with ``--connect-out`` goes away (or the connection is
cut); the input, when its JACK client is gone or the ``--connect-in`` port goes away. While the
output is lost the scheduler sends nothing and keeps its ledger; the clock, decoding and the input
go on. A watchdog thread checks a few times a second, reopens what died and reconnects what was
cut; when the output is back, the ledger's note_offs and CC 123 on every output channel go out
before anything else.

JACK is watched through a port-less client of its own (ctypes on the libjack python-rtmidi uses):
the server is alive while its frame time moves; ports and connections are looked up by name. It is
never activated, so no code of ours runs on JACK's threads. This matters: once the JACK server is
gone, rtmidi's send spins forever on a full ring buffer while holding the GIL, which would freeze
the whole daemon; the watchdog sees the server stop within half a second, long before that buffer
(~2,300 messages) fills, and the scheduler refuses to send more than ``MAX_UNCONFIRMED`` messages
without the watchdog's word that the server still runs. Other APIs (ALSA, CoreMIDI, Windows) are
watched by port name and failed sends, and reopened by name.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

from . import ports

log = logging.getLogger(__name__)

JACK_MIDI_TYPE = b"8 bit raw midi"
JACK_PORT_IS_INPUT, JACK_PORT_IS_OUTPUT = 0x1, 0x2
JACK_NO_START_SERVER = 0x1
EEXIST = 17  # jack_connect: already connected
MAX_UNCONFIRMED = 1000  # sends without a sign of life from JACK; rtmidi's ring holds ~2,300


def _jack_library():
    """The libjack python-rtmidi loaded (the same library instance, so one set of JACK globals), or
    the system's; None when neither loads."""
    import rtmidi  # noqa: F401  (loads its libjack)

    path = None
    try:
        with open("/proc/self/maps") as maps:
            path = next((line.split()[-1] for line in maps if "libjack" in line and "/" in line), None)
    except OSError:
        pass
    path = path or ctypes.util.find_library("jack")
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    lib.jack_client_open.restype = vp
    lib.jack_client_open.argtypes = [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.jack_client_close.argtypes = [vp]
    lib.jack_last_frame_time.restype = ctypes.c_uint32
    lib.jack_last_frame_time.argtypes = [vp]
    lib.jack_get_sample_rate.restype = ctypes.c_uint32
    lib.jack_get_sample_rate.argtypes = [vp]
    lib.jack_get_buffer_size.restype = ctypes.c_uint32
    lib.jack_get_buffer_size.argtypes = [vp]
    lib.jack_get_ports.restype = ctypes.POINTER(cp)
    lib.jack_get_ports.argtypes = [vp, cp, cp, ctypes.c_ulong]
    lib.jack_free.argtypes = [vp]
    lib.jack_port_by_name.restype = vp
    lib.jack_port_by_name.argtypes = [vp, cp]
    lib.jack_port_connected_to.argtypes = [vp, cp]
    lib.jack_connect.argtypes = [vp, cp, cp]
    # libjack reports every failed attempt to reach a stopped server on stderr, several lines each
    # time; the watchdog tries a few times a second and reports port loss itself. A C function
    # taking a string and doing nothing visible (strlen) stands in for libjack's printer: a Python
    # callback could be called by libjack's threads while the interpreter shuts down.
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    lib.jack_set_error_function.argtypes = [vp]
    lib.jack_set_info_function.argtypes = [vp]
    quiet = ctypes.cast(libc.strlen, vp)
    lib.jack_set_error_function(quiet)
    lib.jack_set_info_function(quiet)
    return lib


class JackWatch:
    """A port-less, never activated JACK client that looks at the graph."""

    def __init__(self, lib, name: str = "vqcpc-watch"):
        self.lib, self.name = lib, name
        self.client = None
        self.last_frame: int | None = None
        self.last_move = 0.0
        self.stall_s = 0.5

    def open(self) -> bool:
        status = ctypes.c_int(0)
        client = self.lib.jack_client_open(self.name.encode(), JACK_NO_START_SERVER, ctypes.byref(status))
        if not client:
            return False
        self.client = client
        period = self.lib.jack_get_buffer_size(client) / max(1, self.lib.jack_get_sample_rate(client))
        self.stall_s = max(0.5, 4 * period)
        self.last_frame, self.last_move = None, time.monotonic()
        return True

    def close(self) -> None:
        if self.client:
            self.lib.jack_client_close(self.client)
            self.client = None

    def alive(self) -> tuple[bool, bool]:
        """(alive, moved): the server ran a process cycle within the last ``stall_s`` seconds; it
        ran one since the last call."""
        if not self.client:
            return False, False
        frame, t = self.lib.jack_last_frame_time(self.client), time.monotonic()
        moved = frame != self.last_frame
        if moved:
            self.last_frame, self.last_move = frame, t
        return t - self.last_move < self.stall_s, moved

    def ports(self, outputs: bool) -> list[str]:
        """Full names of the MIDI ports that send (``outputs``) or receive."""
        flags = JACK_PORT_IS_OUTPUT if outputs else JACK_PORT_IS_INPUT
        names = self.lib.jack_get_ports(self.client, None, JACK_MIDI_TYPE, flags)
        if not names:
            return []
        out, i = [], 0
        while names[i]:
            out.append(names[i].decode(errors="replace"))
            i += 1
        self.lib.jack_free(names)
        return out

    def exists(self, port: str) -> bool:
        return bool(self.lib.jack_port_by_name(self.client, port.encode()))

    def connected(self, port: str, other: str) -> bool:
        p = self.lib.jack_port_by_name(self.client, port.encode())
        return bool(p) and self.lib.jack_port_connected_to(p, other.encode()) > 0

    def connect(self, source: str, destination: str) -> bool:
        return self.lib.jack_connect(self.client, source.encode(), destination.encode()) in (0, EEXIST)


class SysexEnd:
    """JACK: an F7 sent into our own input whenever it has been quiet for ``QUIET_S``.

    rtmidi's JACK input appends every event that follows a sysex without its F7 to that sysex, and
    delivers nothing until an event ending in F7 comes: one unterminated sysex (a cable pulled
    mid-dump, a buggy plug-in) would leave the daemon deaf for good, with no error anywhere. A lone F7
    ends such a sysex (what it swallowed comes out and ``ports._unswallow`` takes the notes and
    clocks out of it, late by up to ``QUIET_S``); with no broken sysex, rtmidi hands the F7 over as a
    message of its own, which the reader drops. A busy input is never touched (a live stream with a
    sysex in progress would arrive within milliseconds). Its own client, ``CLIENT-sysex-end``."""

    QUIET_S = 0.25

    def __init__(self, api: int, client: str):
        self.api, self.client = api, client
        self.port = None
        self.last = 0.0

    def attach(self, target: str) -> None:
        """Connects to ``target`` (our input's full JACK name); on failure it stays detached."""
        import rtmidi

        self.close()
        try:
            out = rtmidi.MidiOut(self.api, name=f"{self.client}-sysex-end")
            names = out.get_ports()
            found = ports.find_port(names, target)
            if found is None:
                out.delete()
                return
            out.open_port(names.index(found), name="F7")
            self.port = out
        except Exception as err:  # rtmidi raises its own errors; the daemon works without this
            log.debug("sysex-end client: %s", err)

    def poke(self, listener) -> bool:
        """Sends F7 when the input has been quiet; True when it did."""
        now = time.perf_counter()
        if self.port is None or listener is None or now - listener.last_message < self.QUIET_S \
                or now - self.last < self.QUIET_S:
            return False
        self.last = now
        try:
            self.port.send_message([ports.SYSEX_END])
        except Exception as err:
            log.debug("sysex-end send: %s", err)
            return False
        return True

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close_port()
                port.delete()
            except Exception as err:
                log.debug("closing the sysex-end client: %s", err)


class _End:
    """One direction: the rtmidi port object and what it should be connected to."""

    def __init__(self, kind: str, name: str, connect: str | None):
        self.kind, self.name, self.connect = kind, name, connect
        self.port = None  # the rtmidi MidiIn / MidiOut
        self.listener: ports.Listener | None = None  # the input's reader
        self.full: str | None = None  # JACK: our port's full name ("client:port")
        self.target: str | None = None  # the full name of the port we connected to
        self.lost: str | None = None


class PortLink:
    """Opens the daemon's ports, gives the scheduler its ``send``, and runs the watchdog."""

    def __init__(self, api: int, *, in_name: str, out_name: str, connect_in: str | None = None,
                 connect_out: str | None = None, client: str = "vqcpc", interval: float | None = None,
                 opener=ports.open_port):
        import rtmidi

        self.api, self.client, self.opener = api, client, opener
        self.jack_api = api == rtmidi.API_UNIX_JACK
        # Windows (no virtual ports): our "ports" are existing ones, opened by name, so their
        # names are what must be there
        named = api == rtmidi.API_WINDOWS_MM
        self.out = _End("output", out_name, connect_out or (out_name if named else None))
        self.inp = _End("input", in_name, connect_in or (in_name if named else None))
        self.named = named
        self.sysex_end = SysexEnd(api, client) if self.jack_api else None
        self.on_message = None
        self.d = None
        self.jack: JackWatch | None = None
        if self.jack_api:
            lib = _jack_library()
            if lib is None:
                log.warning("libjack not loadable through ctypes: JACK ports are watched by name only")
            else:
                self.jack = JackWatch(lib, f"{client}-watch")
                if not self.jack.open():
                    self.jack = None
        self.interval = interval or (0.1 if self.jack else 0.5)
        self._next_server_try = 0.0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vqcpc-ports", daemon=True)

    # -- opening ----------------------------------------------------------------------------------
    def open_output(self) -> None:
        self._open(self.out)

    def open_input(self, on_message) -> None:
        """``on_message(msg, t)``: called from the input's reader thread for every incoming message,
        with its arrival time (time.perf_counter)."""
        self.on_message = on_message
        self._open(self.inp)

    def send(self, msg: list[int]) -> None:
        """The scheduler's send (always under its lock, never while the output is lost)."""
        self.out.port.send_message(msg)

    def attach(self, daemon) -> None:
        self.d = daemon
        if self.jack is not None:
            daemon.scheduler.max_unconfirmed = MAX_UNCONFIRMED

    def _open(self, end: _End) -> None:
        """A fresh rtmidi port for ``end`` (raises MidiSystemError when it cannot be opened)."""
        jack = self.jack if self.jack is not None and self.jack.client else None
        before = set(jack.ports(outputs=end.kind == "output")) if jack else set()
        connect = None if self.named else end.connect
        port = self.opener(end.kind, self.api, end.name, self.client, connect)
        end.port = port
        if end.kind == "input":
            end.listener = ports.Listener(port, self._received)
        if jack:
            mine = [p for p in jack.ports(outputs=end.kind == "output") if p.endswith(":" + end.name)]
            new = [p for p in mine if p not in before]
            end.full = (new or mine or [None])[0]
            if end.kind == "input" and end.full and self.sysex_end is not None:
                self.sysex_end.attach(end.full)
        if end.connect:
            end.target = ports.find_port(port.get_ports(), end.connect)

    def _received(self, msg: list[int], t: float) -> None:
        if self.on_message is not None:
            self.on_message(msg, t)

    def _discard(self, end: _End) -> None:
        """Forget ``end``'s rtmidi port (dead or about to be replaced)."""
        port, end.port, end.full = end.port, None, None
        if end.kind == "input" and self.sysex_end is not None:
            self.sysex_end.close()
        if end.listener is not None:
            end.listener.stop()
            end.listener = None
        if port is None:
            return
        try:
            port.close_port()
            port.delete()
        except Exception as err:  # a port of a dead server may complain; it is gone either way
            log.debug("closing the old %s port: %s", end.kind, err)

    # -- the watchdog -----------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)

    def drain(self, timeout: float = 0.5) -> None:
        """After the last note_offs, before the ports close: let the MIDI system deliver them. rtmidi
        hands messages to JACK in its process callback, so on JACK wait until two process cycles
        have run (a loaded machine may take much longer than a period); elsewhere a short pause."""
        jack = self.jack
        if jack is None or not jack.client:
            time.sleep(0.05)
            return
        lib = jack.lib
        first = lib.jack_last_frame_time(jack.client)
        frames = 2 * max(1, lib.jack_get_buffer_size(jack.client))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (lib.jack_last_frame_time(jack.client) - first) % 2 ** 32 >= frames:
                return
            time.sleep(0.002)

    def close(self) -> None:
        """After the daemon stopped: close both ports and the watch client."""
        self.stop()
        with self.lock:
            for end in (self.inp, self.out):
                self._discard(end)
            if self.jack is not None:
                self.jack.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watchdog must outlive whatever the MIDI system does
                log.exception("port watchdog")

    def check(self) -> None:
        """One round: find what was lost, bring back what can be."""
        with self.lock:
            if self.jack is not None:
                self._check_jack()
            else:
                self._check_by_name()

    def _lose(self, end: _End, reason: str) -> None:
        if end.kind == "output":
            self.d.output_lost(reason)  # the scheduler stops sending before we touch the port
        elif end.lost is None:
            self.d.input_lost(reason)
        end.lost = end.lost or reason

    def _back(self, end: _End) -> None:
        end.lost = None
        if end.kind == "output":
            self.d.output_back(end.target or end.name)
        else:
            self.d.input_back(end.target or end.name)

    def _check_jack(self) -> None:
        j, sched = self.jack, self.d.scheduler
        moved = False
        if j.client is not None:
            alive, moved = j.alive()
            if not alive:
                for end in (self.out, self.inp):
                    self._lose(end, "the JACK server stopped")
                for end in (self.out, self.inp):
                    self._discard(end)  # their clients died with the server
                j.close()
                self._next_server_try = 0.0
        if j.client is None:
            now = time.monotonic()
            if now < self._next_server_try:
                return
            self._next_server_try = now + 0.5  # each try costs a few ms: twice a second is enough
            if not j.open():
                return  # no server yet
            _, moved = j.alive()
        for end in (self.out, self.inp):
            self._check_jack_end(end)
        if self.sysex_end is not None and self.inp.port is not None:
            self.sysex_end.poke(self.inp.listener)  # a broken sysex must not leave us deaf
        if moved and self.out.lost is None and sched.lost is None:
            sched.confirm()  # the server ran a cycle since the last round: our ring is being drained

    def _check_jack_end(self, end: _End) -> None:
        j = self.jack
        if end.kind == "output" and self.d.scheduler.lost is not None and end.lost is None:
            end.lost = self.d.scheduler.lost  # a send failed: this port object is suspect
            self._discard(end)
        if end.port is not None and (end.full is None or not j.exists(end.full)):
            self._lose(end, f"our {end.kind} port left the JACK server")
            self._discard(end)
        if end.port is None:
            try:
                self._open_virtual(end)
            except ports.MidiSystemError as err:
                log.debug("reopening the %s: %s", end.kind, err)
                return
        if end.connect:
            ours, target = end.full, end.target
            src, dst = (ours, target) if end.kind == "output" else (target, ours)
            if target is None or not j.connected(src, dst):
                if end.lost is None:
                    gone = target is None or not j.exists(target)
                    self._lose(end, f"{target or end.connect} {'went away' if gone else 'was disconnected'}")
                found = ports.find_port(j.ports(outputs=end.kind == "input"), end.connect)
                if found is None:
                    return  # not back yet
                end.target = found
                src, dst = (ours, found) if end.kind == "output" else (found, ours)
                if not j.connect(src, dst):
                    return
        if end.lost is not None:
            self._back(end)

    def _open_virtual(self, end: _End) -> None:
        """JACK: a new port of ours (its own client); the watchdog connects it."""
        connect, end.connect = end.connect, None
        try:
            self._open(end)
        finally:
            end.connect = connect
        if end.full is None:
            self._discard(end)
            raise ports.MidiSystemError(f"the new {end.kind} port did not show up")

    def _check_by_name(self) -> None:
        """ALSA, CoreMIDI, Windows: the target's name must be listed; failed sends; reopen by name."""
        for end in (self.out, self.inp):
            if end.kind == "output" and self.d.scheduler.lost is not None:
                end.lost = end.lost or self.d.scheduler.lost
            if end.connect and end.port is not None and end.lost is None:
                try:
                    listed = ports.find_port(end.port.get_ports(), end.connect) is not None
                except Exception:
                    listed = False
                if not listed:
                    self._lose(end, f"{end.target or end.connect} went away")
            if end.lost is None:
                continue
            self._discard(end)
            try:
                self._open(end)
            except ports.MidiSystemError as err:
                log.debug("reopening the %s: %s", end.kind, err)
                continue
            self._back(end)
