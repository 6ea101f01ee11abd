"""``xrdflow app``: the experiment planner in the browser (part of :mod:`xrdflow.cli`).

Runs ``python -m streamlit run xrdflow/app/streamlit_app.py`` bound to 127.0.0.1 (this
machine only) unless ``--host`` says otherwise, and passes its exit status through.
Needs the ``app`` extra (streamlit, plotly, tomli-w).
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

from . import options as O

#: the page streamlit runs
APP_FILE = Path(__file__).resolve().parent / "app" / "streamlit_app.py"
DEFAULT_PORT = 8501
MAX_UPLOAD_MB = 5
EXTRA_HINT = 'pip install -e ".[app]" (or pip install "xrdflow[app]")'


def add_app(sub) -> None:
    """Register ``xrdflow app`` on the CLI's subparsers."""
    p = sub.add_parser(
        "app", help="the experiment planner in a web browser",
        description="Start the planner page (streamlit): choose a crystal, the energy, the "
                    "sample and the mount, and see the Bragg angle, transmission, stage "
                    "angles, plots, the 3D scene and downloads. Open the address it prints.")
    p.add_argument("--host", default=O.DEFAULT_HOST,
                   help=f"address to listen on (default {O.DEFAULT_HOST}: this machine only; "
                        "0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT})")
    p.set_defaults(func=cmd_app)


#: the modules of the ``app`` extra (import name)
APP_MODULES = ("streamlit", "plotly", "tomli_w", "trimesh")


def _missing_modules() -> list[str]:
    missing = []
    for name in APP_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def cmd_app(args) -> int:
    """Run the page; 2 without the app extra, 130 on Ctrl-C, else streamlit's exit status."""
    missing = _missing_modules()
    if missing:
        print(f"xrdflow app: needs the app extra ({', '.join(missing)} missing): {EXTRA_HINT}",
              file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        raise ValueError(f"--port: must be 1-65535, got {args.port}")
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_FILE),
           "--server.address", args.host, "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           # uploads are CIFs, lens and session files: a few MB at most (the page checks
           # each file's own limit); no "Deploy" button for a local planner
           "--server.maxUploadSize", str(MAX_UPLOAD_MB), "--client.toolbarMode", "minimal"]
    print(f"xrdflow app: serving on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd)
    previous = _forward_signals(proc)
    try:
        code = proc.wait()
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell
    except KeyboardInterrupt:  # stop streamlit too (a terminal's Ctrl-C reaches it as well)
        _stop(proc)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _forward_signals(proc: subprocess.Popen) -> dict:
    """Pass SIGTERM / SIGHUP on to streamlit (``kill`` of ``xrdflow app`` must not leave the
    server running); returns the previous handlers."""
    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
    return previous


def _stop(proc: subprocess.Popen) -> None:
    """Ask streamlit to stop (SIGINT), then terminate it, then kill it."""
    for action, timeout in ((lambda: proc.send_signal(signal.SIGINT), 10),
                            (proc.terminate, 5), (proc.kill, None)):
        if proc.poll() is not None:
            return
        action()
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: go on to the harder way at once
            continue
