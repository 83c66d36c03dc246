"""The MIDI input reader on a real JACK server, with other threads of the process holding the GIL.

rtmidi's callback would have to wait for the GIL inside JACK's process cycle; with busy threads
beside it, it lost most of such a stream and turned bursts into copies of their first message
(the stuck-note flake of the live tests). The reader polls rtmidi's queue instead."""
import threading
import time
import uuid

from vqcpc.daemon import ports


def test_bursts_arrive_whole_and_in_order_while_other_threads_hold_the_gil(jack_server):
    api = ports.api_for("jack")
    tag = uuid.uuid4().hex[:6]
    got: list[tuple[float, list[int]]] = []
    inp = ports.open_input(api, "in", client=f"listen-{tag}")
    listener = ports.Listener(inp, lambda msg, t: got.append((t, msg)))
    out = ports.open_output(api, "out", client=f"burst-{tag}", connect=f"listen-{tag}:in")
    busy = True

    def hog():  # pure-Python work: holds the GIL for its whole switch interval, again and again
        x = 0
        while busy:
            for i in range(10000):
                x += i

    hogs = [threading.Thread(target=hog) for _ in range(2)]
    for h in hogs:
        h.start()
    try:
        time.sleep(0.2)
        sent = []
        t_first = time.perf_counter()
        for k in range(60):  # bursts of 20 distinct messages, about two JACK periods apart
            for i in range(20):
                msg = [0x80 | (i % 16), 40 + i, k % 128]
                out.send_message(msg)
                sent.append(msg)
            time.sleep(0.011)
        t_last = time.perf_counter()
        t_end = time.perf_counter() + 5
        while len(got) < len(sent) and time.perf_counter() < t_end:
            time.sleep(0.02)
    finally:
        busy = False
        for h in hogs:
            h.join()
        listener.stop()
        for p in (inp, out):
            p.close_port()
            p.delete()
    assert [m for _, m in got] == sent
    times = [t for t, _ in got]
    assert times == sorted(times)  # rebuilt from rtmidi's deltas: never out of order
    # the arrival times lie within the sending (plus JACK's delivery, a period or two), not at the polls
    assert t_first - 0.001 <= times[0] and times[-1] <= t_last + 0.1
