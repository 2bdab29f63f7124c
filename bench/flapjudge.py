"""A ``proxycheck judge`` that dies and comes back on a signal, for ``daemon_bench.py --flap-seconds``.

    python bench/flapjudge.py --listen HOST:PORT --tls-listen HOST:PORT --cert CHAIN --key KEY

The same judge as ``proxycheck judge`` (``proxycheck.judge.Judge``, in this process), but SIGUSR1
stops it (listeners and connections closed: to a caller, a killed judge) and SIGUSR2 starts it
again on the same ports, at once. Killing and re-spawning the CLI instead would make each outage
last as long as a Python start on a loaded box (1-3 s) whatever ``--flap-down`` says, and charge
that start's CPU to the world's core. SIGTERM stops it for good.
"""

from __future__ import annotations

import argparse
import signal
import time

from proxycheck.judge import Judge, JudgeOptions


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--tls-listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    options = JudgeOptions(listen=host_port(args.listen), tls_listen=host_port(args.tls_listen),
                           cert_file=args.cert, key_file=args.key)
    wanted = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)  # before the judge's threads start: they inherit it
    judge: Judge | None = Judge(options).start()
    print("judge listening", flush=True)
    while True:
        sig = signal.sigwait(wanted)
        t0 = time.monotonic()
        if sig == signal.SIGUSR1 and judge is not None:
            judge.stop()
            judge = None
            print(f"stopped in {time.monotonic() - t0:.3f} s", flush=True)
        elif sig == signal.SIGUSR2 and judge is None:
            judge = Judge(options).start()
            print(f"started in {time.monotonic() - t0:.3f} s", flush=True)
        elif sig in (signal.SIGTERM, signal.SIGINT):
            if judge is not None:
                judge.stop()
            return


if __name__ == "__main__":
    main()
