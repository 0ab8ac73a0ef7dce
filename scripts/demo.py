"""`make demo`: a demo migration end to end on the local PostgreSQL pair.

1. (re)creates the `warehouse` databases: source (owner postgres), target (owner aurora_admin,
   a NON-superuser like Aurora's master user) -- never reuses old data;
2. loads the deterministic demo warehouse into the source (DEMO_SCALE, default 1 ≈ 40 MB);
3. runs `bin/airflow dags test pg_migration` (local runner) against them;
4. prints the run's verdict and where its report is; exits non-zero unless the run succeeded
   (`airflow dags test` itself exits 0 even when tasks failed: the run's final state is read).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from include.pg_migration.demo import load_warehouse  # noqa: E402
from scripts import localpg  # noqa: E402


def main() -> int:
    scale = float(os.environ.get("DEMO_SCALE", "1"))
    servers = localpg.reset_demo_dbs()
    source = servers["source"]
    started = time.monotonic()
    print(
        f"demo: loading the demo warehouse (scale {scale}) into {source.host}:{source.port}/warehouse ...", flush=True
    )
    summary = load_warehouse(source.dsn("warehouse"), scale=scale)
    print(f"demo: loaded {len(summary.get('schemas', []))} schemas in {time.monotonic() - started:.1f}s", flush=True)

    env = dict(os.environ)
    for key in ("AIRFLOW_CONN_PG_SOURCE", "AIRFLOW_CONN_PG_TARGET"):
        env.pop(key, None)  # the demo always runs on the local pair (bin/airflow fills them in)
    conf = json.loads(os.environ.get("DEMO_CONF", "{}"))
    cmd = [str(REPO / "bin" / "airflow"), "dags", "test", "pg_migration"]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    print(f"demo: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if os.environ.get("DEMO_VERBOSE") or re.search(
            r"\[DAG TEST\] (starting|end) task|MISMATCH|ERROR|error  ", line
        ):
            sys.stdout.write(line)
    proc.wait()
    out = "".join(lines)
    states = re.findall(r"DagRun Finished: .*?state=(\w+)", out)
    state = states[-1] if states else "unknown"
    reports = re.findall(r"report written to (\S+)/report\.json", out)
    print()
    if reports:
        report_dir = reports[-1]
        print(f"demo: report: {report_dir}/report.md (and report.json)")
        try:
            data = json.loads(Path(report_dir, "report.json").read_text())
            print(
                f"demo: verdict: {data['verdict'].upper()}; {len(data['schemas'])} schema(s), "
                f"{sum(len(s['tables']) for s in data['schemas'])} table(s) validated"
            )
            for failure in data.get("failures", [])[:20]:
                print(f"demo:   - {failure}")
        except (OSError, ValueError, KeyError) as exc:
            print(f"demo: cannot read the report: {exc}")
    print(f"demo: DAG run state: {state} (total {time.monotonic() - started:.0f}s)")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
