"""Screenshots of TensorBoard's dashboards for a logdir, drawn by headless Chromium.

    python scripts/tensorboard_screenshots.py <logdir> [--out DIR] [--port P] [--width W --height H]
        [--dashboards timeseries scalars text images custom_scalars hparams] [--tags REGEX]
        [--runs REGEX] [--x-axis {step,relative,wall}] [--smoothing S] [--large] [--log-y]
        [--expand-groups]

Starts TensorBoard on 127.0.0.1 (a free port unless --port), waits until its HTTP API lists a run
(/data/runs), renders each dashboard in a fresh Chromium profile (what a new user sees), stops both
and prints the PNG paths (<out>/<dashboard>[-<variant>].png, one a line). Without Chromium it
prints how to install it and exits 0, having produced nothing.

Chromium is driven over its DevTools protocol (--remote-debugging-pipe, standard library only)
rather than with `--screenshot --virtual-time-budget`: virtual time does not wait for Time Series'
lazily loaded cards (a filtered card came out blank), and the axis, full-size and log-scale
switches are UI state that no URL carries. A page is photographed once no request is pending, no
visible spinner turns, every visible image has loaded and the DOM has stopped growing.

What the URL carries (TensorBoard 2.21):
- Time Series reads `?tagFilter=`, `?runFilter=` (regexes) and `?smoothing=` from the query;
  `?forceSVG=true` is always set: its charts are WebGL in a worker otherwise, and headless Chromium
  draws their axes but no lines.
- The older dashboards (Scalars, Images, Text, Histograms, Distributions) read `&tagFilter=`,
  `&regexInput=` (runs) and `&_smoothingWeight=` from the hash (`#scalars&tagFilter=loss`);
  Custom Scalars reads the runs regex and smoothing only; HParams none of them.
- The horizontal axis (Step/Relative/Wall) is in no URL nor stored setting: --x-axis clicks it
  (Time Series' settings pane, the Scalars and Custom Scalars sidebar), as --large clicks each
  chart's full-size button and --log-y each chart's log-scale toggle (every chart's: a β or s_i
  chart, negative, comes out empty; choose the charts with --tags). --expand-groups opens the
  groups TensorBoard leaves collapsed (it opens the first two or three, alphabetically) and, in
  Time Series, lifts the 12-cards-a-page limit (a setting in localStorage, set before loading).
  Time Series and Scalars draw only what is in view: a tall --height shows more.
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARDS = ("timeseries", "scalars", "text", "images", "custom_scalars", "hparams")
POLYMER = ("scalars", "custom_scalars", "images", "text", "histograms", "distributions", "hparams")
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "chromium not found: install it with `apt-get install -y chromium` (or set CHROMIUM)"
AXIS_IDS = {"step": "step", "relative": "relative", "wall": "wall_time"}
SWITCHABLE = ("timeseries", "scalars", "custom_scalars")  # axis, size and scale switches

# Shared by every script run in the page: elements through open shadow roots (the Polymer
# dashboards live in them), visibility in the viewport, normalised text.
JS_LIB = """
const deep = (sel, root = document, out = []) => {
  root.querySelectorAll(sel).forEach(e => out.push(e));
  root.querySelectorAll('*').forEach(e => e.shadowRoot && deep(sel, e.shadowRoot, out));
  return out;
};
const visible = e => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < innerHeight
    && r.right > 0 && r.left < innerWidth;
};
const text = e => (e.textContent || '').trim().toLowerCase();
const click = els => { els.forEach(e => e.click()); return els.length; };
"""

# Loading indicators in view (the sliders' paper-progress is no indicator), images still loading,
# and the number of elements (a page still rendering grows).
JS_BUSY = """({
  busy: deep('mat-spinner, mat-progress-spinner, paper-spinner, paper-spinner-lite')
      .filter(e => visible(e) && (!e.tagName.startsWith('PAPER') || e.active)).length
    + deep('img').filter(e => visible(e) && !e.complete).length,
  nodes: deep('*').length,
})"""


def find_chromium() -> str | None:
    """$CHROMIUM, else the first Chromium or Chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next(filter(None, map(shutil.which, CHROMIUMS)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """`tensorboard --logdir LOGDIR --host 127.0.0.1 --port PORT` in a child process.

    It reads every event file once before it answers (the Python loader, `--reload_task
    blocking`): the fast loader, and the Python one in a thread, list runs before their events are
    read, so a screenshot could show part of a run. (`--bind_all` is a bare flag: `--bind_all
    false` is taken for a subcommand and refused.)
    """

    def __init__(self, logdir: Path, port: int, timeout: float = 300.0):
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        # `python -m` puts its working directory first on sys.path: an empty one, so that no
        # inspect.py (say) beside the caller shadows the standard library's.
        self.cwd = tempfile.TemporaryDirectory(prefix="tb-shots-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir.resolve()),
             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
             "--reload_task", "blocking", "--reload_interval", "0"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd.name)
        try:
            self.runs = self._wait_for_runs(timeout)
        except BaseException:
            self.close()
            raise

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=10) as response:
            return json.load(response)

    def _wait_for_runs(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                log = self.log.read().decode(errors="replace")
                raise RuntimeError(f"tensorboard exited:\n{log}")
            try:
                if runs := self.get("/data/runs"):
                    return runs
            except OSError:
                pass  # not listening yet
            time.sleep(0.3)
        raise RuntimeError(f"tensorboard listed no run within {timeout:.0f} s: no events here?")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.cwd.cleanup()


class Chromium:
    """Headless Chromium, one page, driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, binary: str, width: int, height: int, local_storage=()):
        self.profile = tempfile.TemporaryDirectory(prefix="tb-shots-")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}",
                "--no-first-run", "--no-default-browser-check", "--mute-audio",
                f"--window-size={width},{height}", "about:blank"]

        def onto_3_and_4():  # in the child: the ends Chromium reads and writes, as fds 3 and 4
            ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome, from_chrome)]
            os.dup2(ends[0], 3)  # (a shell's `3<&12` fails in dash: one-digit fds only)
            os.dup2(ends[1], 4)

        self.proc = subprocess.Popen(
            args, preexec_fn=onto_3_and_4, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self.session = b"", 0, None
        self.pending: set[str] = set()  # network requests in flight
        self.last_network = time.monotonic()
        self.api_calls = 0  # requests to TensorBoard's HTTP API: the app has started
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        attached = self.send("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        for key, value in dict(local_storage).items():  # set before the page's scripts read it
            item = ", ".join(map(json.dumps, (key, json.dumps(value))))
            self.send("Page.addScriptToEvaluateOnNewDocument",
                      source=f"localStorage.setItem({item})")

    def _receive(self, timeout: float | None) -> dict | None:
        """The next message, or None if none came within timeout seconds."""
        while b"\0" not in self._buffer:
            if not select.select([self._in], [], [], timeout)[0]:
                return None
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe (crashed?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(message)
        method = message.get("method", "")
        if method == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("data:"):
                self.pending.add(message["params"]["requestId"])
                self.last_network = time.monotonic()
            self.api_calls += "/data/" in url
        elif method in ("Network.loadingFinished", "Network.loadingFailed"):
            self.pending.discard(message["params"]["requestId"])
            self.last_network = time.monotonic()
        return message

    def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            reply = self._receive(left)
            if reply and reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(f"chromium did not answer {method} within {timeout} s")

    def pump(self, seconds: float):
        """Take in events (network activity) for a while."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    def run(self, script: str, timeout: float = 30.0):
        """Evaluate JS_LIB + script in the page; its value."""
        expression = f"(() => {{{JS_LIB}\nreturn {script};}})()"
        reply = self.send("Runtime.evaluate", timeout, expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"in page: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def settle(self, timeout: float, quiet: float = 0.6) -> bool:
        """Wait until the page is drawn: no request for `quiet` s, nothing busy, DOM unchanged."""
        deadline, nodes, stable = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline:
            self.pump(0.25)
            try:  # the page answers once its main thread is free: a busy page answers late
                state = self.run(JS_BUSY, max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
            still = not self.pending and time.monotonic() - self.last_network > quiet
            stable = stable + 1 if still and not state["busy"] and state["nodes"] == nodes else 0
            nodes = state["nodes"]
            if stable >= 2:
                return True
        return False

    def open(self, url: str, timeout: float) -> bool:
        """Load url and wait until it is drawn (False: still busy after timeout seconds)."""
        self.api_calls = 0
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.api_calls and time.monotonic() < deadline:  # the 6 MB app is parsed
            self.pump(0.1)
        return self.settle(deadline - time.monotonic())

    def screenshot(self, path: Path):
        png = self.send("Page.captureScreenshot", 120, format="png")["data"]
        path.write_bytes(base64.b64decode(png))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)
        self.profile.cleanup()


def dashboard_url(base: str, dashboard: str, tags: str | None, runs: str | None,
                  smoothing: float | None) -> str:
    """The URL opening `dashboard` with the filters and smoothing where TensorBoard reads them."""
    query = {"forceSVG": "true"}
    state = {}
    if dashboard == "timeseries":
        query |= {"tagFilter": tags, "runFilter": runs, "smoothing": smoothing}
    elif dashboard in POLYMER:
        state = {"tagFilter": tags, "regexInput": runs, "_smoothingWeight": smoothing}
    # The hash's values may hold no '=' or '&' of their own: every character is escaped.
    hash_state = "".join(f"&{key}={urllib.parse.quote(str(value), safe='')}"
                         for key, value in state.items() if value is not None)
    query = {key: value for key, value in query.items() if value is not None}
    return f"{base}/?{urllib.parse.urlencode(query)}#{dashboard}{hash_state}"


def set_x_axis(page: Chromium, dashboard: str, axis: str) -> int:
    """Click the horizontal axis `axis`; the number of axis controls switched."""
    if dashboard == "timeseries":  # a mat-select in the settings pane, open by default
        opened = page.run("""click(deep('mat-select').filter(s => /^(step|relative|wall)$/
            .test(text(s))).map(s => s.querySelector('.mat-mdc-select-trigger') || s))""")
        page.pump(0.5)
        return opened and page.run(f"click(deep('mat-option').filter(o => text(o) === '{axis}'))")
    return page.run(f"click(deep('#x-type-selector #{AXIS_IDS[axis]}'))")


def enlarge(page: Chromium, dashboard: str) -> int:
    if dashboard == "timeseries":
        return page.run("""click(deep('button[title="Toggle full size mode"]'))""")
    return page.run("""click(deep('paper-icon-button[icon="fullscreen"]'))""")


def log_scale(page: Chromium, dashboard: str) -> int:
    if dashboard != "timeseries":
        return page.run("""click(deep('paper-icon-button[title="Toggle y-axis log scale"]'))""")
    menus = page.run("""deep('button[title="More line chart options"]').length""")
    for i in range(menus):  # one overlay menu at a time
        page.run(f"""click(deep('button[title="More line chart options"]').slice({i}, {i + 1}))""")
        page.pump(0.4)
        page.run("click(deep('[role=menuitem]').filter(m => text(m).includes('log scale')))")
        page.pump(0.4)
    return menus


def expand_groups(page: Chromium, dashboard: str) -> int:
    if dashboard == "timeseries":
        return page.run("""click(deep('button[aria-label="Expand group"]').filter(b =>
            b.querySelector('[data-mat-icon-name^="expand_more"]')))""")
    return page.run("""click(deep('tf-category-paginated-view').filter(v => !v.opened)
        .map(v => v.shadowRoot.querySelector('button.heading')).filter(Boolean))""")


def variant(args) -> str:
    parts = [f"x_{args.x_axis}"] if args.x_axis != "step" else []
    parts += [name for name in ("large", "log_y", "expand_groups") if getattr(args, name)]
    return "".join(f"-{part}" for part in parts)


def shoot(logdir: Path, out: Path, dashboards, port: int | None = None, width: int = 1600,
          height: int = 1000, tags: str | None = None, runs: str | None = None,
          x_axis: str = "step", smoothing: float | None = None, large: bool = False,
          log_y: bool = False, expand: bool = False, suffix: str = "",
          timeout: float = 30.0, chromium: str | None = None) -> list[Path]:
    """Render each dashboard of logdir to out/<dashboard><suffix>.png; the paths written."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(INSTALL)
    out.mkdir(parents=True, exist_ok=True)
    board = TensorBoard(logdir, port or free_port())
    actions = [(name, action) for name, wanted, action in (
        ("--expand-groups", expand, expand_groups),
        ("--x-axis", x_axis != "step", lambda page, board: set_x_axis(page, board, x_axis)),
        ("--large", large, enlarge), ("--log-y", log_y, log_scale)) if wanted]
    paths = []
    try:
        active = {name for name, plugin in board.get("/data/plugins_listing").items()
                  if plugin["enabled"]}
        # Time Series shows 12 cards a group and a page; the page size is a stored setting.
        settings = {"_tb_global_settings": {"paginationSize": 10_000}} if expand else {}
        page = Chromium(chromium, width, height, settings)
        try:
            for dashboard in dashboards:
                if dashboard not in active:
                    print(f"note: {dashboard} has no data here (TensorBoard shows it inactive)",
                          file=sys.stderr)
                url = dashboard_url(board.url, dashboard, tags, runs, smoothing)
                drawn = page.open(url, timeout)
                for name, action in actions:
                    switched = action(page, dashboard)  # (all groups open: nothing to expand)
                    if not switched and dashboard in SWITCHABLE and name != "--expand-groups":
                        print(f"note: {dashboard}: found nothing to switch for {name}",
                              file=sys.stderr)
                    page.pump(0.3)
                    drawn = page.settle(timeout)
                if not drawn:
                    print(f"warning: {dashboard} still loading after {timeout:.0f} s",
                          file=sys.stderr)
                paths.append(out / f"{dashboard}{suffix}.png")
                page.screenshot(paths[-1])
        finally:
            page.close()
    finally:
        board.close()
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logdir", type=Path, help="a run dir, a sweep, outputs/: any TB logdir")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: LOGDIR/screenshots)")
    parser.add_argument("--port", type=int, help="TensorBoard's port (default: a free one)")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--dashboards", nargs="+", default=list(DASHBOARDS), metavar="NAME",
                        help=f"default: {' '.join(DASHBOARDS)}; also histograms, distributions")
    parser.add_argument("--tags", metavar="REGEX", help="show only tags matching REGEX")
    parser.add_argument("--runs", metavar="REGEX", help="show only runs matching REGEX")
    parser.add_argument("--x-axis", choices=AXIS_IDS, default="step",
                        help="horizontal axis of Time Series, Scalars and Custom Scalars")
    parser.add_argument("--smoothing", type=float, help="0 to 0.999 (TensorBoard's default 0.6)")
    parser.add_argument("--large", action="store_true",
                        help="every chart in full-size mode (with --tags: one chart shown large)")
    parser.add_argument("--log-y", action="store_true", help="every chart's y-axis in log scale")
    parser.add_argument("--expand-groups", action="store_true",
                        help="open the tag groups TensorBoard leaves collapsed")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for a dashboard to finish drawing")
    args = parser.parse_args(argv)
    if not args.logdir.is_dir():
        parser.error(f"no such directory: {args.logdir}")
    if (chromium := find_chromium()) is None:
        print(INSTALL)
        return 0
    paths = shoot(args.logdir, args.out or args.logdir / "screenshots", args.dashboards,
                  args.port, args.width, args.height, args.tags, args.runs, args.x_axis,
                  args.smoothing, args.large, args.log_y, args.expand_groups, variant(args),
                  args.timeout, chromium)
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
