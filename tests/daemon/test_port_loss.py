"""Port loss on a real JACK server (DESIGN §6): the daemon's output connected with --connect-out to a
recorder that goes away and comes back; its input connected with --connect-in to a player that does
the same; the JACK server itself killed and restarted. Notes are held through the daemon's bypass
echo, so what sounds when a port goes is known exactly."""
import json
import signal
import time
import uuid

import pytest

from .conftest import JACKD, start_jackd, stop_jackd


def _api():
    import rtmidi

    return rtmidi.API_UNIX_JACK


class Client:
    """A JACK client with one virtual port under a fixed name, so that it can come back as itself."""

    def __init__(self, client: str, port: str, kind: str, events=None):
        import rtmidi

        from vqcpc.daemon import ports

        self.events = events if events is not None else []
        self.listener = None
        if kind == "input":
            self.port = rtmidi.MidiIn(_api(), name=client)
            self.port.ignore_types(sysex=False, timing=False, active_sense=False)
        else:
            self.port = rtmidi.MidiOut(_api(), name=client)
        self.port.open_virtual_port(port)
        if kind == "input":  # rtmidi queues what arrives before the reader starts
            self.listener = ports.Listener(self.port, lambda msg, t: self.events.append(msg), drop=ports.NOT_MUSIC)
        self.kind = kind

    def send(self, msg):
        self.port.send_message(msg)

    def close(self):
        if self.listener is not None:
            self.listener.stop()
        self.port.close_port()
        self.port.delete()


def _wait(cond, timeout=5.0, what="condition"):
    t_end = time.perf_counter() + timeout
    while time.perf_counter() < t_end:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _port_events(path, kind, port):
    return [e for e in _log(path) if e["event"] == kind and e["port"] == port]


def _note_ons(events):
    return [m for m in events if (m[0] & 0xF0) == 0x90 and m[2] > 0]


def _after_return(events):
    """What came first after the port returned: note_offs, then the CC 123s."""
    offs = [(m[0] & 0x0F, m[1]) for m in events if (m[0] & 0xF0) == 0x80]
    cc = [m[0] & 0x0F for m in events if (m[0] & 0xF0) == 0xB0 and m[1] == 123]
    return offs, cc


def _hold_chord(player, rec_events, chord):
    player.send([0xB0, 81, 127])  # bypass: the input is echoed on channel 1 and held while held
    for p in chord:
        player.send([0x90, p, 100])
    _wait(lambda: len(_note_ons(rec_events)) >= len(chord), what="the echoed chord")


def test_connect_out_and_connect_in_ports_that_go_and_return(daemon, tmp_path):
    tag = uuid.uuid4().hex[:6]
    rec_client, play_client = f"rec-{tag}", f"play-{tag}"
    rec_events: list = []
    rec = Client(rec_client, "rec", "input", rec_events)
    player = Client(play_client, "play", "output")
    log = tmp_path / "log.jsonl"
    proc, _, _ = daemon("--clock", "internal", "--bpm", "120", "--connect-out", f"{rec_client}:rec",
                        "--connect-in", f"{play_client}:play", "--log-json", str(log))
    _hold_chord(player, rec_events, (60, 64, 67))
    # the recorder goes away with three notes sounding
    rec.close()
    _wait(lambda: _port_events(log, "port_lost", "output"), what="port_lost")
    lost = _port_events(log, "port_lost", "output")[0]
    assert lost["sounding"] == 3 and "went away" in lost["reason"]
    player.send([0x90, 72, 100])  # echoed while the output is lost: never sent, never in the ledger
    player.send([0x80, 60, 0])  # released while lost: 60 still gets its note_off on the return
    time.sleep(0.5)
    # it comes back under the same name
    back_events: list = []
    rec = Client(rec_client, "rec", "input", back_events)
    _wait(lambda: len(_after_return(back_events)[1]) >= 4, what="CC 123 after the return")
    offs, cc = _after_return(back_events)
    assert sorted(offs) == [(0, 60), (0, 64), (0, 67)] and sorted(cc) == [0, 1, 2, 3]
    first = back_events[:7]  # the note_offs first, then the CC 123s, before anything else
    assert [m[0] & 0xF0 for m in first] == [0x80] * 3 + [0xB0] * 4
    assert not _note_ons(back_events), "a note echoed while the output was lost came out"
    back = _port_events(log, "port_back", "output")
    assert back and back[0]["note_offs"] == 3 and back[0]["cc123_channels"] == [1, 2, 3, 4]
    # the player goes away and returns: the input is reconnected, its notes echo again
    player.close()
    _wait(lambda: _port_events(log, "port_lost", "input"), what="input port_lost")
    time.sleep(0.3)
    player = Client(play_client, "play", "output")
    _wait(lambda: _port_events(log, "port_back", "input"), what="input port_back")
    player.send([0x90, 76, 100])
    _wait(lambda: [0x90, 76, 100] in back_events, what="the echo through the reconnected input")
    assert proc.poll() is None
    player.send([0xB0, 81, 0])  # bypass off: the echoed notes end
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    time.sleep(0.2)
    sounding = {}
    for m in back_events:
        key = (m[0] & 0x0F, m[1])
        if (m[0] & 0xF0) == 0x90 and m[2] > 0:
            sounding[key] = sounding.get(key, 0) + 1
        elif (m[0] & 0xF0) == 0x80 and sounding.get(key):
            sounding[key] -= 1
    assert not any(sounding.values()), f"stuck after the return: {sounding}"
    rec.close()
    player.close()


def test_jack_server_killed_and_restarted(daemon, jack_server, tmp_path):
    """The server dies under the daemon (rtmidi's send would then spin forever, holding the GIL):
    the daemon must keep running, and when the server is back, reopen its ports, reconnect, and
    close what was sounding. The session's server is the one killed and restarted (this process
    cannot reach a second one); it is up again when the test ends, whatever happens."""
    name = jack_server
    try:
        tag = uuid.uuid4().hex[:6]
        rec_client, play_client = f"rec-{tag}", f"play-{tag}"
        rec_events: list = []
        rec = Client(rec_client, "rec", "input", rec_events)
        player = Client(play_client, "play", "output")
        log = tmp_path / "log.jsonl"
        proc, in_name, out_name = daemon("--clock", "internal", "--bpm", "240", "--connect-out", f"{rec_client}:rec",
                                         "--connect-in", f"{play_client}:play", "--log-json", str(log))
        _hold_chord(player, rec_events, (62, 65, 69))
        # our own clients die with the server: drop them first (a send to a dead client would hang us)
        stop_jackd(JACKD.pop(name), signal.SIGKILL)
        for c in (player, rec):
            c.close()
        _wait(lambda: _port_events(log, "port_lost", "output"), what="port_lost")
        assert _port_events(log, "port_lost", "output")[0]["reason"] == "the JACK server stopped"
        time.sleep(1.0)  # the daemon goes on in time with no server: bars still close
        assert proc.poll() is None
        bars_before = len([e for e in _log(log) if e["event"] == "bar_in"])
        JACKD[name] = start_jackd(name)
        back_events: list = []
        rec = Client(rec_client, "rec", "input", back_events)
        player = Client(play_client, "play", "output")
        _wait(lambda: len(_after_return(back_events)[1]) >= 4, timeout=8, what="CC 123 after the restart")
        offs, cc = _after_return(back_events)
        assert sorted(offs) == [(0, 62), (0, 65), (0, 69)] and sorted(cc) == [0, 1, 2, 3]
        _wait(lambda: _port_events(log, "port_back", "input"), what="input port_back")
        player.send([0x90, 74, 100])
        _wait(lambda: [0x90, 74, 100] in back_events, what="the echo after the restart")
        # bars still close on the new server (one a second at 240 bpm; the restart may take less)
        _wait(lambda: len([e for e in _log(log) if e["event"] == "bar_in"]) > bars_before, timeout=3,
              what="a bar closing after the restart")
        import rtmidi

        probe = rtmidi.MidiIn(_api(), name="probe")
        assert any(out_name in p for p in probe.get_ports())  # our output is back on the new server
        probe.delete()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        rec.close()
        player.close()
    finally:
        if name not in JACKD:
            JACKD[name] = start_jackd(name)
