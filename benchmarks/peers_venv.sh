#!/usr/bin/env bash
# Build benchmarks/.venv-peers: taskit (editable) with the seven peers and the web stack pinned in
# benchmarks/peers-requirements.txt. Kept apart from the development venv because the peers' pins
# conflict with it (arq needs redis-py < 6). Usage: bash benchmarks/peers_venv.sh [python]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${1:-python3}"
venv="$here/.venv-peers"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/peers-requirements.txt" -e "$root[redis]"
"$venv/bin/python" -c 'import arq, saq, taskiq, taskiq_redis, celery, rq, dramatiq, huey, fastapi, flask, gunicorn, uvicorn, taskit'
echo "built $venv"
