"""A real JACK server (dummy driver, its own name) and the real daemon process on it."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest


JACKD_LOGS: list[str] = []  # jackd's own output, one file a start, read back in the run's summary
JACKD_REALTIME: list[int] = []  # each start: how many of its threads run real-time


def start_jackd(name: str) -> subprocess.Popen:
    """`jackd -n NAME -d dummy` (real-time where allowed, as in CI), once it answers. Its output goes
    to a file of its own, summarised after the run (real-time or not, xruns)."""
    assert shutil.which("jackd"), "jackd is not installed: apt-get install --no-install-recommends jackd2"
    from vqcpc.daemon.ports import MidiSystemError, start_dummy_jackd

    fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    JACKD_LOGS.append(path)
    with os.fdopen(fd, "w") as log:
        try:
            proc = start_dummy_jackd(name, log=log)
        except MidiSystemError as err:
            pytest.fail(str(err))
    JACKD_REALTIME.append(realtime_threads(proc.pid))
    return proc


def realtime_threads(pid: int) -> int:
    """How many threads of process PID run SCHED_FIFO or SCHED_RR (policy, field 41 of stat)."""
    n = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        n += fields[38] in ("1", "2")  # fields after "pid (comm)" start at field 3
    return n


def jackd_report(paths: list[str]) -> str:
    """One line on the JACK servers of a run: whether real-time scheduling was granted, how many
    xruns (a client late for its cycle: JACK drops that cycle's MIDI) they reported. The first
    thing to read when a live test lost or stuck a note."""
    text = ""
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                text += f.read()
        except OSError:
            pass
    refused = text.count("Cannot use real-time scheduling")
    xruns = text.count("JackEngine::XRun")
    rt = "refused" if refused or not all(JACKD_REALTIME) else "granted"
    why = " (without it a busy machine makes JACK drop a late client's MIDI: lost or stuck notes)" if rt == "refused" else ""
    return (f"jackd dummy servers: {len(paths)} started, real-time scheduling {rt} (real-time threads: "
            f"{', '.join(map(str, JACKD_REALTIME))}), {xruns} xruns reported{why}")


def pytest_terminal_summary(terminalreporter):
    if JACKD_LOGS:
        terminalreporter.write_line(jackd_report(JACKD_LOGS))
        for p in JACKD_LOGS:
            try:
                os.unlink(p)
            except OSError:
                pass


def stop_jackd(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    from vqcpc.daemon.ports import stop_jackd as stop

    stop(proc, sig)


JACKD: dict[str, subprocess.Popen] = {}  # server name -> its jackd now (a test may restart it)


@pytest.fixture(scope="session")
def jack_server():
    """jackd -d dummy under a name of its own. A missing jackd fails (it is installed by the README's
    test command), it never skips. One server for the whole session: libjack, once it has talked to
    one server, cannot reach a server of another name from the same process."""
    name = f"vqcpc-test-{os.getpid()}"
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    JACKD[name] = start_jackd(name)
    yield name
    stop_jackd(JACKD.pop(name))
    if old is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = old


class Recorder:
    def __init__(self, connect: str):
        from vqcpc.daemon import ports

        self.events: list[tuple[float, list[int]]] = []
        self.port = ports.open_input(ports.api_for("jack"), "rec", client=f"rec-{uuid.uuid4().hex[:6]}", connect=connect)
        self.listener = ports.Listener(self.port, lambda msg, t: self.events.append((t, msg)), drop=ports.NOT_MUSIC)

    def unclosed(self) -> list[tuple[int, int]]:
        """(channel, pitch) of every note_on with no note_off after it."""
        count: dict[tuple[int, int], int] = {}
        for _, m in self.events:
            key = (m[0] & 0x0F, m[1]) if len(m) >= 3 else None
            if key and (m[0] & 0xF0) == 0x90 and m[2] > 0:
                count[key] = count.get(key, 0) + 1
            elif key and ((m[0] & 0xF0) == 0x80 or (m[0] & 0xF0) == 0x90):
                count[key] = count.get(key, 0) - 1
        return [k for k, n in count.items() if n > 0]

    def note_ons(self) -> list[tuple[float, list[int]]]:
        return [(t, m) for t, m in self.events if (m[0] & 0xF0) == 0x90 and m[2] > 0]

    def close(self):
        self.listener.stop()
        self.port.close_port()
        self.port.delete()


class Player:
    def __init__(self, connect: str):
        from vqcpc.daemon import ports

        self.port = ports.open_output(ports.api_for("jack"), "play", client=f"play-{uuid.uuid4().hex[:6]}", connect=connect)

    def send(self, msg):
        self.port.send_message(msg)

    def close(self):
        self.port.close_port()
        self.port.delete()


@pytest.fixture
def daemon(jack_server, tiny_model):
    """Starts `python -m vqcpc.daemon` on the tiny model; yields (process, in port, out port)."""
    started = []

    def start(*extra):
        tag = uuid.uuid4().hex[:6]
        in_name, out_name = f"vqcpc in {tag}", f"vqcpc out {tag}"
        proc = subprocess.Popen([sys.executable, "-m", "vqcpc.daemon", "--model", str(tiny_model[0]), "--api", "jack",
                                 "--in-port", in_name, "--out-port", out_name, "--quiet", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        import rtmidi

        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="probe")
        for _ in range(300):
            assert proc.poll() is None, proc.stderr.read()
            if any(in_name in p for p in probe.get_ports()) and any(out_name in p for p in probe.get_ports()):
                break
            time.sleep(0.05)
        probe.delete()
        return proc, in_name, out_name

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        try:
            _, err = p.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            continue
        if err and err.strip():  # shown by pytest when the test failed
            print(f"daemon stderr (exit {p.returncode}):\n{err[-3000:]}")
