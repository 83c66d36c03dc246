"""MIDI ports through python-rtmidi: virtual ports on ALSA or JACK (Linux) and CoreMIDI (macOS);
named existing ports on Windows, where rtmidi has no virtual ports (use loopMIDI)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from vqcpc.music.errors import VqcpcError


class MidiSystemError(VqcpcError):
    """No MIDI system to open ports on, or a port that cannot be found."""


NO_MIDI_HINT = ("no MIDI system found: start a JACK server (e.g. `jackd -d dummy`, or your usual JACK setup) "
                "or load the ALSA sequencer (`sudo modprobe snd-seq`)")


def _rtmidi():
    import rtmidi

    return rtmidi


def api_for(name: str) -> int:
    """'auto' | 'alsa' | 'jack' | 'coremidi' | 'windows' -> rtmidi API constant."""
    rtmidi = _rtmidi()
    apis = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK, "coremidi": rtmidi.API_MACOSX_CORE,
            "windows": rtmidi.API_WINDOWS_MM}
    if name != "auto":
        if apis[name] not in rtmidi.get_compiled_api():
            raise MidiSystemError(f"--api {name}: this python-rtmidi was built without it")
        return apis[name]
    if sys.platform == "darwin":
        return rtmidi.API_MACOSX_CORE
    if sys.platform.startswith("win"):
        return rtmidi.API_WINDOWS_MM
    if os.path.exists("/dev/snd/seq") and rtmidi.API_LINUX_ALSA in rtmidi.get_compiled_api():
        return rtmidi.API_LINUX_ALSA
    return rtmidi.API_UNIX_JACK


def jack_server_running() -> bool:
    """Is a JACK server reachable (under $JACK_DEFAULT_SERVER)? Never starts one; libjack's own
    complaints on stderr are silenced while it asks."""
    rtmidi = _rtmidi()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="vqcpc-probe")
        probe.get_ports()
        probe.delete()
        return True
    except Exception:  # rtmidi raises SystemError/RuntimeError when no server answers
        return False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


DUMMY_JACKD = ["-d", "dummy", "-r", "48000", "-p", "256"]  # no sound card: a 5.33 ms period


def start_dummy_jackd(server: str, log=subprocess.DEVNULL, timeout: float = 5.0) -> subprocess.Popen:
    """`jackd -n SERVER -d dummy`, returned once it answers under $JACK_DEFAULT_SERVER = SERVER.

    Real-time scheduling is asked for (jackd's default, priority 70): where it is granted (root, or
    an rtprio limit) the server's and every client's process thread run SCHED_FIFO, so a busy
    machine cannot make a client miss its cycle. Without it JACK drops the MIDI of a client late
    for its cycle (an xrun), which a receiver sees as lost or stuck notes: measured here with two
    threads holding the GIL beside a reader, 2 runs of 18 lost a whole burst of 20 messages;
    real-time, none of 18 and no xrun. Where it is refused, jackd prints so and runs without it."""
    if shutil.which("jackd") is None:
        raise MidiSystemError("no jackd to start: install jackd2 (apt-get install --no-install-recommends jackd2)")
    proc = subprocess.Popen(["jackd", "-n", server, "-R", "-P", "70", *DUMMY_JACKD], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    env_before = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MidiSystemError(f"jackd -n {server} exited at start (status {proc.returncode})")
            if jack_server_running():
                return proc
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        raise MidiSystemError(f"jackd -n {server} did not come up within {timeout:g} s")
    finally:
        if env_before is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = env_before


def stop_jackd(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stops a jackd started by ``start_dummy_jackd`` and waits for it (kills it after 5 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def midi_system_available(api: int) -> bool:
    rtmidi = _rtmidi()
    if api == rtmidi.API_UNIX_JACK:
        return jack_server_running()
    if api == rtmidi.API_LINUX_ALSA:
        return os.path.exists("/dev/snd/seq")
    return True


def find_port(ports: list[str], name: str) -> str | None:
    """The first port called ``name`` or whose name contains it."""
    for p in ports:
        if p == name or name in p:
            return p
    return None


def _find(ports: list[str], name: str) -> int:
    found = find_port(ports, name)
    if found is None:
        raise MidiSystemError(f"no MIDI port named {name!r}; ports: {', '.join(ports) or '(none)'}")
    return ports.index(found)


def open_port(kind: str, api: int, name: str, client: str, connect: str | None):
    """A virtual ``kind`` ("input" or "output") port called ``name`` (or, where virtual ports are
    impossible, the existing port of that name); ``connect``: instead connect to that existing port."""
    rtmidi = _rtmidi()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    if not midi_system_available(api):
        raise MidiSystemError(NO_MIDI_HINT)
    try:
        if kind == "input":
            port = rtmidi.MidiIn(api, name=client, queue_size_limit=4096)
            port.ignore_types(sysex=False, timing=False, active_sense=False)  # see Listener
        else:
            port = rtmidi.MidiOut(api, name=client)
        if api == rtmidi.API_WINDOWS_MM:
            port.open_port(_find(port.get_ports(), name))
        elif connect:
            port.open_port(_find(port.get_ports(), connect), name)
        else:
            port.open_virtual_port(name)
    except MidiSystemError:
        raise
    except Exception as err:  # rtmidi's own error types
        raise MidiSystemError(f"cannot open MIDI {kind} {name!r}: {err}") from err
    return port


def open_input(api: int, name: str, *, client: str = "vqcpc", connect: str | None = None):
    """The daemon's input; ``connect``: an existing output port (e.g. the DAW's) to listen to."""
    return open_port("input", api, name, client, connect)


def open_output(api: int, name: str, *, client: str = "vqcpc", connect: str | None = None):
    """The daemon's output; ``connect``: an existing input port (e.g. a synth) to play into."""
    return open_port("output", api, name, client, connect)


def list_ports(api: int) -> dict[str, list[str]]:
    rtmidi = _rtmidi()
    if not midi_system_available(api):
        raise MidiSystemError(NO_MIDI_HINT)
    return {"inputs": rtmidi.MidiIn(api, name="vqcpc-list").get_ports(),
            "outputs": rtmidi.MidiOut(api, name="vqcpc-list").get_ports()}


SYSEX, SYSEX_END, ACTIVE_SENSE, CLOCK = 0xF0, 0xF7, 0xFE, 0xF8
NOT_MUSIC = (SYSEX, SYSEX_END, ACTIVE_SENSE, CLOCK, 0xFA, 0xFB, 0xFC)  # what a recorder of notes drops


def _unswallow(msg: list[int]) -> list[list[int]]:
    """rtmidi's JACK input appends every event that follows a sysex without its F7 (one cut in two,
    or a malformed one) to that sysex until an F7 comes, so the clocks and notes between are
    delivered inside it, all at once. Read such a message as the byte stream it is: real-time bytes
    (clock) and the messages after a status byte that broke the sysex come out again, in order
    (their times are lost: they get the time of the whole). Anything else passes unchanged."""
    if not msg or msg[0] != SYSEX or all(b < 0x80 for b in msg[1:-1]):
        return [msg]
    import mido

    return [m.bytes() for m in mido.parse_all(msg)]


class Listener:
    """Reads an rtmidi input port from a thread of ours; never through rtmidi's callback.

    rtmidi's JACK backend calls a Python callback from inside JACK's process cycle, where it must
    wait for the GIL. When another thread of the process holds the GIL longer than a JACK period
    (5.3 ms at 256 frames) the port buffer is cleared and refilled under the callback: messages are
    lost, or turn into copies of the first message of the cycle (seen: a daemon's closing burst of
    20 note_offs recorded as its first note_off 20 times, so notes were counted stuck; a Python
    thread doing pure-Python work beside a callback lost 70 % of 4,000 messages, polling lost none).
    rtmidi's own queue is filled in the process cycle without the GIL, so it is polled here.

    Each message's time is rebuilt from rtmidi's deltas (the MIDI system's own arrival times), put on
    ``now``'s clock by the smallest lag seen between a message and the poll that found it, so a poll
    delayed by the GIL does not move it; a lag over ``REANCHOR`` re-anchors (lost deltas). Clocks and
    notes that rtmidi swallowed into a broken sysex are taken out of it again (``_unswallow``). That is why nothing is filtered inside rtmidi (a filtered
    message still advances its delta): ``drop`` lists status bytes dropped here instead.
    """

    def __init__(self, port, on_message, *, drop=(SYSEX, SYSEX_END, ACTIVE_SENSE), interval: float = 0.001,
                 now=time.perf_counter, name: str = "vqcpc-midi-in"):
        self.port, self.on_message, self.drop = port, on_message, frozenset(drop)
        self.interval, self.now = interval, now
        self.last_message = now()  # when a poll last found a message (SysexEnd looks at it)
        self._elapsed = 0.0  # the sum of rtmidi's deltas: its time of the last message
        self._offset: float | None = None  # now() - that time, smallest seen
        self._last_poll = 0.0
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    RELAX = 1e-4  # the offset may rise by this much a second (clock drift between the two)
    REANCHOR = 0.05  # a message this much older than its poll: deltas were lost, anchor anew

    def stamp(self, delta: float, polled: float) -> float:
        """The time, on ``now``'s clock, of a message that came ``delta`` s after the previous one
        and was found by a poll at ``polled``."""
        self._elapsed += delta
        lag = polled - self._elapsed
        if self._offset is None or lag - self._offset > self.REANCHOR:
            # first message, or rtmidi's deltas lost time: its JACK input swallows every event into an
            # unterminated sysex until an F7 comes, and their deltas with them (or the poller was held
            # up that long, when the poll time is the best there is). Later polls lower it again.
            self._offset = lag
        else:
            self._offset = min(self._offset + self.RELAX * max(0.0, polled - self._last_poll), lag)
        self._last_poll = polled
        return self._elapsed + self._offset

    def poll(self) -> int:
        """Hands every queued message to ``on_message(msg, t)``; returns how many were read."""
        n = 0
        while True:
            got = self.port.get_message()
            if not got:
                return n
            msg, delta = got
            self.last_message = polled = self.now()
            t = self.stamp(delta, polled)
            n += 1
            for m in _unswallow(msg):
                if m and m[0] not in self.drop:
                    self.on_message(m, t)

    def _run(self) -> None:
        while self._running:
            try:
                self.poll()
            except Exception:  # a handler's error must not end the reading of the port
                import logging

                logging.getLogger(__name__).exception("MIDI input handler")
            time.sleep(self.interval)

    def stop(self) -> None:
        """Stops reading (the port stays open); returns once the thread has ended."""
        self._running = False
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
