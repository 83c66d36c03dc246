"""MIDI ports through python-rtmidi: virtual ports on ALSA or JACK (Linux) and CoreMIDI (macOS);
named existing ports on Windows, where rtmidi has no virtual ports (use loopMIDI)."""
from __future__ import annotations

import os
import sys

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
            port.ignore_types(sysex=True, timing=False, active_sense=True)
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
