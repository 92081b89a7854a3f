"""Sweeps (`dlnlab-train -m`): every point checked before any job starts, a failing job never
stops the others, and the sweep ends saying which jobs did not complete.

- `SweepCheck` (a Hydra callback, conf/train.yaml's `hydra.callbacks`): at the start of a
  multirun it expands the overrides into jobs as Hydra's BasicSweeper does, composes each job's
  config with Hydra's compose API and checks it (`check`: interpolations, then
  dlnlab.preflight.preflight).
  Any bad point: one line per bad point, nothing run, exit 2. Otherwise it writes `jobs.json`
  (each job's number, overrides and directory) into the sweep folder. At the end it reads each
  job's summary.json and prints a line per job that failed, was interrupted or left no summary
  (missing); exit 1 if any failed or is missing (or all diverged), 128 + the signal if one was
  interrupted.
- `run_job` (dlnlab.cli, in every job, whatever the launcher: basic, joblib, submitit) never
  raises: an exception becomes the job's summary.json (status failed, the message) and its exit
  status, so that the launcher goes on with the other jobs.
- A job interrupted by a signal leaves `.interrupted` in the sweep folder (the signal's name):
  jobs that have not started yet then skip (missing), so that Ctrl-C stops the sweep, not only
  the job that is running. When the jobs run in other processes (joblib, submitit), the sweep's
  own process catches SIGINT and SIGTERM too: it marks the sweep and waits for the running jobs
  (which the terminal's Ctrl-C reaches as well) to stop at the end of their block with their
  summaries, instead of dying and taking them down; a second Ctrl-C quits at once.

Torch-free: the checks answer before torch or Lightning is imported.
"""

import copy
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from dlnlab.checks import ConfigError
from dlnlab.files import write_json

PROGRAM = "dlnlab-train"
JOBS = "jobs.json"  # the sweep's jobs (num, overrides, dir), written before any job starts
STOP = ".interrupted"  # in the sweep folder: a job was stopped by this signal; no new job starts
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def check(cfg: DictConfig):
    """A job's config checked as dlnlab-train checks it before running: every interpolation
    resolves, then dlnlab.preflight.preflight (returned)."""
    from dlnlab.preflight import preflight

    resolve(cfg)
    return preflight(cfg)


def resolve(cfg: DictConfig) -> None:
    """Every interpolation of `cfg` resolves, or one ConfigError naming the key and its value."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raw = _raw(cfg, key)
        shown = f"{key}={raw}" if raw is not None else key
        reason = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"{shown} cannot be resolved ({reason}): give a value, or an "
                          "interpolation of an existing key (e.g. ${run.seed})") from None


def _raw(cfg: DictConfig, key: str):
    """The value of `key` as written (an interpolation unresolved), or None."""
    parent, _, last = key.rpartition(".")
    try:
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return OmegaConf.to_container(node, resolve=False)[last]
    except Exception:  # a list index, or a key that is not there: the message names the key only
        return None


def exit_status(summary: dict) -> int:
    """A run's exit status from its summary: 0 completed (or some replicas diverged), 1 all
    diverged, 128 + the signal if interrupted by one (130 Ctrl-C, 143 SIGTERM), 1 failed."""
    status = summary.get("status")
    if status == "interrupted":
        return 128 + signal.Signals[summary["signal"]].value if summary.get("signal") else 1
    if status == "failed":
        return 1
    entries = summary.get("replicas", [summary])
    return 1 if all(entry.get("status") == "diverged" for entry in entries) else 0


def job_name(overrides: list[str]) -> str:
    """A job's overrides as the user wrote them (Hydra escapes a sweep's values: `$\\{nope\\}`)."""
    return " ".join(re.sub(r"\\(.)", r"\1", o) for o in overrides) or "(no overrides)"


def run_job(cfg: DictConfig, run) -> int:
    """A sweep job: `run(cfg)` (returns the exit status), never raising. A ConfigError or any
    other exception is reported in one line (a crash also with its traceback, for the job's log)
    and recorded in the job's summary.json as status failed with the message; what the job
    wrote before is kept."""
    hydra = HydraConfig.get()
    out = Path(hydra.runtime.output_dir)
    sweep = Path(hydra.sweep.dir)
    name = f"job {hydra.job.num} ({job_name(list(hydra.overrides.task))})"
    stopped = read_stop(sweep)
    if stopped:
        print(f"{PROGRAM}: {name} not started: the sweep was interrupted ({stopped})",
              file=sys.stderr)
        return 128 + signal.Signals[stopped].value
    try:
        status = run(cfg)
    except KeyboardInterrupt:  # Ctrl-C before the run's own handlers (or after them)
        return interrupted(sweep, name, "SIGINT")
    except SystemExit as e:  # Lightning exits 1 on a KeyboardInterrupt inside fit, and ignores
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # SIGINT from then on
            signal.signal(signal.SIGINT, signal.default_int_handler)
            return interrupted(sweep, name, "SIGINT")
        code = e.code if isinstance(e.code, int) and e.code else 1
        print(f"{PROGRAM}: error: {name} exited with status {code}", file=sys.stderr)
        record_failure(out / "summary.json", f"the run exited with status {code}", cfg)
        return code
    except Exception as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, ConfigError):
            traceback.print_exc()
            message = f"{type(e).__name__}: {message}"
        print(f"{PROGRAM}: error: {name} failed: {message}", file=sys.stderr)
        record_failure(out / "summary.json", message, cfg)
        return 1
    summary = read_summary(out / "summary.json") or {}
    if summary.get("status") == "interrupted" and summary.get("signal"):
        stop(sweep, summary["signal"])  # the jobs still to come skip
    return status


def stop(sweep: Path, name: str) -> None:
    """Mark the sweep interrupted by signal `name`: jobs that have not started skip."""
    try:
        (sweep / STOP).write_text(name + "\n")
    except OSError as e:
        print(f"{PROGRAM}: error: cannot write {sweep / STOP}: {e.strerror or e}",
              file=sys.stderr)


def interrupted(sweep: Path, name: str, sig: str) -> int:
    print(f"{PROGRAM}: {name} interrupted ({sig}) before its summary", file=sys.stderr)
    stop(sweep, sig)
    return 128 + signal.Signals[sig].value


_parent_handlers: dict = {}  # the sweep process's own handlers while its jobs run elsewhere


def _stop_sweep(sweep: Path):
    """The sweep process's handler when its jobs run in other processes (joblib, submitit): no
    new job starts, the running ones (which the terminal's Ctrl-C reaches too) stop at the end of
    their block with their summaries, and the sweep waits for them instead of killing them."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        stop(sweep, name)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C quits at once
        print(f"\n{PROGRAM}: {name}: no new job starts; the running ones stop at the end of "
              "their block, with their summaries (Ctrl-C again to quit at once)", file=sys.stderr)
    return handler


def record_failure(path: Path, message: str, cfg: DictConfig) -> None:
    """summary.json says failed, with the message: the run's own summary (kept whole, only its
    status and message changed) or, for a job that failed before training, a new one."""
    summary = read_summary(path)
    if summary is None:
        try:
            config = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException:
            config = OmegaConf.to_container(cfg, resolve=False)
        summary = {"config": config}
    if summary.get("status") != "failed" or not summary.get("message"):
        summary["message"] = message  # (a run that failed in fit has its own already)
    summary["status"] = "failed"
    try:
        write_json(path, summary)
    except ConfigError as e:  # a full disk: say so, the sweep goes on
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_stop(sweep: Path) -> str | None:
    try:
        name = (sweep / STOP).read_text().strip()
    except OSError:
        return None
    return name if name in signal.Signals.__members__ else "SIGINT"


def expand(config: DictConfig) -> list[list[str]] | None:
    """The sweep's jobs, each as its list of overrides, in Hydra's order (BasicSweeper's split of
    hydra.sweeper.params and the command line's overrides); None for another sweeper (Optuna
    and the like choose their points as they go)."""
    if OmegaConf.select(config, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    loader = GlobalHydra.instance().hydra.config_loader
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    return jobs


def varying(config: DictConfig) -> set[str]:
    """The keys the command line sweeps over (`model.alpha=1e-5,2`): what names a job."""
    arguments = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    parsed = OverridesParser.create().parse_overrides(arguments)
    return {o.get_key_element() for o in parsed if o.is_sweep_override()}


class SweepCheck(Callback):
    """Checks every point of a sweep before any job starts; reports the jobs that did not
    complete at its end (see the module docstring). `result`: the file each job writes."""

    def __init__(self, result: str = "summary.json"):
        self.result = result
        self.jobs: list[dict] | None = None
        self.sweep: Path | None = None

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None,
                          **kwargs) -> None:
        self.sweep = Path(str(config.hydra.sweep.dir))
        jobs = expand(config)
        if jobs is not None:
            self._check_all(config, config_name, jobs)
        (self.sweep / STOP).unlink(missing_ok=True)  # (a sweep run again into its folder)
        if OmegaConf.select(config, "hydra.launcher._target_") != BASIC_LAUNCHER:
            handler = _stop_sweep(self.sweep)
            for sig in (signal.SIGINT, signal.SIGTERM):
                _parent_handlers[sig] = signal.signal(sig, handler)

    def _check_all(self, config: DictConfig, config_name: str | None,
                   jobs: list[list[str]]) -> None:
        """Every job checked: any bad one listed with the others, exit 2; else jobs.json."""
        keys = varying(config)
        hydra_overrides = list(OmegaConf.to_container(config.hydra.overrides.hydra))
        errors, self.jobs = [], []
        saved = HydraConfig.instance().cfg
        try:
            for num, overrides in enumerate(jobs):
                shown = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys]
                name = f"job {num} ({job_name(shown or overrides)})"
                try:
                    directory = self._check(config, config_name, hydra_overrides, overrides, num)
                except ConfigError as e:
                    errors.append(f"{name}: {e}")
                    continue
                except Exception as e:  # Hydra's own: a group option that does not exist, ...
                    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                    errors.append(f"{name}: {first}")
                    continue
                self.jobs.append({"num": num, "overrides": overrides, "dir": directory})
        finally:
            HydraConfig.instance().cfg = saved
        if errors:
            for error in errors:
                print(f"{PROGRAM}: error: {error}", file=sys.stderr)
            print(f"{PROGRAM}: error: {len(errors)} of {len(jobs)} sweep points are invalid: "
                  "nothing was run; fix or drop them", file=sys.stderr)
            sys.exit(2)
        self.sweep.mkdir(parents=True, exist_ok=True)
        write_json(self.sweep / JOBS, {"jobs": self.jobs})

    def _check(self, config: DictConfig, config_name: str | None, hydra_overrides: list[str],
               overrides: list[str], num: int) -> str:
        """Compose job `num` as the launcher will (Hydra's compose API, the sweep's resolver
        cache, its number and output directory), check it; return its directory relative to the
        sweep folder."""
        from hydra import compose

        cfg = compose(config_name, overrides=hydra_overrides + list(overrides),
                      return_hydra_config=True)
        OmegaConf.copy_cache(from_config=config, to_config=cfg)  # the same ${now:...}
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.job.num = cfg.hydra.job.id = num
            out = os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
            cfg.hydra.runtime.output_dir = os.path.abspath(out)
        HydraConfig.instance().set_config(cfg)
        task = copy.deepcopy(cfg)  # the task's config, as run_job hands it over: without hydra
        with read_write(task), open_dict(task):
            del task["hydra"]
        check(task)
        return os.path.relpath(out, str(cfg.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        for sig, handler in _parent_handlers.items():
            signal.signal(sig, handler)
        _parent_handlers.clear()
        if self.sweep is None:
            return
        report = outcome(self.sweep, self.result)
        if not report["jobs"]:
            return
        for line in report["lines"]:
            print(f"{PROGRAM}: {line}", file=sys.stderr)
        print(f"{PROGRAM}: sweep: {report['counts']} -> {self.sweep}")
        if report["status"]:
            sys.exit(report["status"])


def jobs(root: Path, result: str = "summary.json") -> list[dict]:
    """Every job of a sweep folder, with its result: those of jobs.json (a job that never started
    has no folder), and every other folder holding `.hydra/` (a run of Hydra). Each: job (the
    folder, relative to root), status (the summary's, or "missing" without one), message,
    summary (or None)."""
    root = Path(root)
    listed = read_summary(root / JOBS) or {}
    folders = [root / entry["dir"] for entry in listed.get("jobs", [])]
    folders += [p.parent for p in sorted(root.rglob(".hydra")) if p.parent not in folders]
    found = []
    for folder in folders:
        summary = read_summary(folder / result)
        if result != "summary.json" and (folder / result).exists():
            summary = {"status": "completed"}
        found.append({
            "job": str(folder.relative_to(root)) if folder != root else ".",
            "status": summary.get("status", "completed") if summary else "missing",
            "message": (summary or {}).get("message") or _why(folder, summary, result),
            "summary": summary,
        })
    return found


def _why(folder: Path, summary: dict | None, result: str) -> str | None:
    if summary is None:
        return f"no {result}: the job did not start or was killed"
    if summary.get("status") == "interrupted":
        return (f"stopped by {summary.get('signal') or 'a request'}: resume with "
                f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}")
    return None


def outcome(root: Path, result: str = "summary.json") -> dict:
    """The sweep's outcome: its jobs, a line per job that did not complete, the counts, and the
    exit status (0; 128 + signal if interrupted; else 1 if a job failed or is missing, or all
    diverged)."""
    found = jobs(root, result)
    lines, counts = [], {}
    for job in found:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
        if job["status"] in ("failed", "missing", "interrupted"):
            lines.append(f"{job['status']}: {job['job']}: {job['message'] or job['status']}")
    status = 0
    stop = read_stop(root)
    signals = [job["summary"].get("signal") for job in found
               if job["status"] == "interrupted" and job["summary"].get("signal")]
    if stop or signals:
        status = 128 + signal.Signals[stop or signals[0]].value
    elif counts.get("failed") or counts.get("missing") or counts.get("interrupted"):
        status = 1
    elif found and all(job["summary"] and exit_status(job["summary"]) for job in found):
        status = 1  # every job diverged
    text = ", ".join(f"{n} {status_}" for status_, n in sorted(counts.items()))
    jobs_ = f"{len(found)} job{'' if len(found) == 1 else 's'}"
    return {"jobs": found, "lines": lines, "counts": f"{jobs_}: {text}",
            "status": status}
