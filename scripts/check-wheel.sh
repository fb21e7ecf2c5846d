#!/usr/bin/env bash
# The wheel is what we test: build the sdist and the wheel, check them, then install the wheel (not
# the checkout) into fresh virtualenvs with a plain Airflow and prove that it works there:
#
#   lowest   every dependency at the lower bound the wheel declares (apache-airflow 3.3.0, ...)
#   highest  apache-airflow $HIGHEST_AIRFLOW, the rest as the resolver picks (the newest)
#
# In each: `airflow providers list` shows our name, version and description; the example DAG runs
# with `airflow dags test` (SQLite, a temporary AIRFLOW_HOME); the extras [gcs], [kubernetes] and
# [test] install and import. Needs only the package registries. Exit code 0 when all of it passes.
#
# Environment: PYTHON (default: .venv/bin/python; builds, and makes the virtualenvs),
# HIGHEST_AIRFLOW (default below: the newest 3.3.x), KEEP_WORK=1 keeps the temporary folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
HIGHEST_AIRFLOW="${HIGHEST_AIRFLOW:-3.3.2}"
UV="$(dirname "$PYTHON")/uv"
export UV_PYTHON_DOWNLOADS=never  # use $PYTHON; never fetch an interpreter
# The virtualenvs must see only what is installed in them: no checkout on the path, no settings
# of the caller's Airflow.
unset PYTHONPATH
for name in $(compgen -e | grep '^AIRFLOW' || true); do unset "$name"; done

WORK="$(mktemp -d -t cmdexec-check-wheel-XXXXXX)"
cleanup() { if [ "${KEEP_WORK:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 143' TERM INT  # a stopped check removes its folder too
cd "$WORK"  # python -c and python - put the current folder on sys.path: never the checkout
step() { printf '\n== %s (at %d s)\n' "$*" "$SECONDS"; }

step "build the sdist and the wheel (from the checkout's files, not its build leftovers)"
mkdir "$WORK/src"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard -- . ':(exclude).venv' \
  | tar -C "$ROOT" --null -T - -cf - | tar -C "$WORK/src" -xf -
if [ -x "$UV" ]; then installer=(--installer uv); else installer=(); fi
PATH="$(dirname "$PYTHON"):$PATH" "$PYTHON" -m build -q "${installer[@]}" --outdir "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/*.whl)"
"$PYTHON" -m twine check --strict "$WORK"/dist/*

step "the wheel holds every file of the package (the Ruby runner too)"
"$PYTHON" - "$WHEEL" "$ROOT" <<'EOF'
import subprocess, sys, zipfile
wheel, root = sys.argv[1:]
tracked = subprocess.run(["git", "-C", root, "ls-files", "airflow_cmdexec_provider"], capture_output=True,
                         text=True, check=True).stdout.split()
missing = sorted(set(tracked) - set(zipfile.ZipFile(wheel).namelist()))
assert not missing, f"files of the package missing from {wheel}: {missing}"
print(f"{len(tracked)} package files in {wheel.rsplit('/', 1)[-1]}, among them runner/rb_runner.rb and runner/py_runner.py")
EOF

step "the lowest versions: the lower bound of every requirement of the wheel"
"$PYTHON" - "$WHEEL" > "$WORK/lowest.txt" <<'EOF'
import sys, zipfile
from email.parser import Parser
from packaging.requirements import Requirement
wheel = zipfile.ZipFile(sys.argv[1])
metadata = Parser().parsestr(wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode())
for line in metadata.get_all("Requires-Dist"):
    requirement = Requirement(line)
    # an exact pin (the linters of the [test] extra) is its own lower bound
    lower = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==")]
    assert lower, f"{line}: every requirement needs a lower bound (>= or ==) that this check installs"
    print(f"{requirement.name}=={lower[0]}")
EOF
cat "$WORK/lowest.txt"

make_venv() {  # make_venv DIR
  if [ -x "$UV" ]; then "$UV" venv -q --python "$PYTHON" "$1"; else "$PYTHON" -m venv "$1"; fi
}
install() {  # install VENV ARGS...
  local venv="$1"; shift
  if [ -x "$UV" ]; then "$UV" pip install -q --python "$venv/bin/python" "$@"; else "$venv/bin/pip" install -q "$@"; fi
}

check_venv() {  # check_venv NAME INSTALL-ARGS...
  local name="$1"; shift
  local venv="$WORK/venv-$name" home="$WORK/home-$name"
  step "$name: a fresh virtualenv with a plain Airflow and the wheel"
  make_venv "$venv"
  install "$venv" "$@" "$WHEEL"
  "$venv/bin/python" -c 'import airflow, airflow_cmdexec_provider as p, pathspec, boto3, hjson
print(f"apache-airflow {airflow.__version__}, airflow-cmdexec-provider {p.__version__} from {p.__file__}")
assert "/site-packages/" in p.__file__, "the checkout was imported, not the wheel"'

  mkdir -p "$home"
  cp -r "$ROOT/example_dags" "$home/dags"
  export AIRFLOW_HOME="$home" AIRFLOW__CORE__DAGS_FOLDER="$home/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
  (cd "$home" && "$venv/bin/airflow" db migrate >"$home/migrate.log" 2>&1) || { cat "$home/migrate.log"; return 1; }

  step "$name: airflow providers list"
  (cd "$home" && "$venv/bin/airflow" providers list -o json 2>"$home/providers.err") >"$home/providers.json" \
    || { cat "$home/providers.err"; return 1; }
  "$venv/bin/python" - "$home/providers.json" <<'EOF'
import json, sys
from airflow_cmdexec_provider import __version__
from airflow_cmdexec_provider.get_provider_info import get_provider_info
listed = {p["package_name"]: p for p in json.load(open(sys.argv[1]))}
ours = listed.get("airflow-cmdexec-provider")
assert ours, f"airflow-cmdexec-provider is not in `airflow providers list`: {sorted(listed)}"
assert ours["version"] == __version__, ours
assert ours["description"].rstrip(".") == get_provider_info()["description"].rstrip("."), ours
print(ours)
EOF

  step "$name: airflow dags test cmdexec_example"
  if ! (cd "$home" && "$venv/bin/airflow" dags test cmdexec_example >"$home/dags-test.log" 2>&1) \
    || ! grep -q "state=success" "$home/dags-test.log" || grep -q "Task failed" "$home/dags-test.log"; then
    cat "$home/dags-test.log"; echo "FAILED: the example DAG in the $name environment" >&2; return 1
  fi
  for task in prepare compute enrich report; do
    grep -q "Task cmdexec_example.$task runs on the local executor" "$home/dags-test.log" \
      || { cat "$home/dags-test.log"; echo "FAILED: $task did not run through the provider" >&2; return 1; }
  done
  grep -o "stored values seen by a plain Airflow task: .*" "$home/dags-test.log" | sed -E 's/ +\[airflow.*$//'
  "$venv/bin/python" - "$home/dags" "$WORK/$name-project.tar.gz" <<'EOF'
# What the ECS backend ships is chosen with .digdagignore through pathspec's GitIgnoreSpec.
import sys, tarfile, tempfile
from pathlib import Path
from airflow_cmdexec_provider.runner.workdir import pack_to
project, archive = Path(sys.argv[1]), Path(sys.argv[2])
(project / ".digdagignore").write_text("*.rb\n")
with tempfile.TemporaryDirectory() as io_dir, archive.open("wb") as out:
    pack_to(out, project, Path(io_dir))
names = tarfile.open(archive).getnames()
assert "project/tasks/my_workflow.py" in names and "project/tasks/my_workflow.rb" not in names, names
print(f"ECS project archive with .digdagignore: {len(names)} entries, no *.rb")
EOF
  unset AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES

  step "$name: the extras [gcs], [kubernetes] and [test]"
  install "$venv" "$@" "$WHEEL[gcs,kubernetes,test]"
  "$venv/bin/python" - <<'EOF'
import json
import docker, gcp_storage_emulator, kubernetes, moto, playwright, pytest, pytest_timeout  # noqa: F401
import airflow.providers.cncf.kubernetes  # noqa: F401
from google.cloud import storage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from airflow_cmdexec_provider.config import StorageConfig
from airflow_cmdexec_provider.storage import open_storage
# A V4 signed URL is made locally from a service-account key: no GCS needed.
key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
account = {"type": "service_account", "project_id": "p", "private_key_id": "k", "private_key": key,
           "client_email": "c@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}
gcs = open_storage(StorageConfig(conn_id="c", type="gcs", bucket="b", secret=json.dumps(account)))
assert "X-Goog-Signature=" in gcs.presigned_get("k", 60)
print(f"google-cloud-storage {storage.__version__}, kubernetes {kubernetes.__version__}, moto {moto.__version__}, "
      f"pytest {pytest.__version__}: import and sign")
EOF
}

check_venv lowest -c "$WORK/lowest.txt"
check_venv highest "apache-airflow==$HIGHEST_AIRFLOW"
step "OK: the wheel installs and works with apache-airflow $(sed -n 's/^apache-airflow==//p' "$WORK/lowest.txt") and $HIGHEST_AIRFLOW"
