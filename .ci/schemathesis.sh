#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against a live daemon with its token, every operation of the
# committed OpenAPI document: no 5xx, no answer outside its documented status codes, content
# types and schemas. Used by .ci/run after the tests built target/debug/sdlc.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
sdlc="$repo/target/debug/sdlc"

# Run as a module of the python3 it is installed for, so no script directory need be on PATH.
if ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q '4.32.5'; then
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi

# A project with a tool and a plan, so that operations on them have something to find.
project=$(mktemp -d)
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid"
        wait "$daemon_pid" || true
    fi
    rm -rf "$project"
}
trap cleanup EXIT
mkdir -p "$project/.sdlc/tools/echo" "$project/.sdlc/plans"
cat > "$project/.sdlc/tools/echo/tool" <<'TOOL'
#!/bin/sh
if [ "$1" = "--meta" ]; then
    printf '{"name":"echo","display_name":"Echo","description":"answers ok","version":"1","input_schema":{"type":"object"}}'
    exit 0
fi
cat >/dev/null
printf '{"ok":true,"data":{}}'
TOOL
chmod +x "$project/.sdlc/tools/echo/tool"
printf '{"plan_id":"nightly","steps":[{"id":"a","tool":"echo","input":{}}]}\n' > "$project/.sdlc/plans/nightly.json"

(cd "$project" && exec "$sdlc" orchestrate --listen 127.0.0.1:0 --tick-rate 1 2> "$project/daemon.log") &
daemon_pid=$!
daemon_file="$project/.sdlc/orchestrator.db.daemon.json"
for _ in $(seq 1 300); do
    [ -s "$daemon_file" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$project/daemon.log"; exit 1; }
    sleep 0.1
done
addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["addr"])' "$daemon_file")
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$daemon_file")

# One worker: the machine's CPython 3.11.7 can fail compiling in several threads at once
# ("AST constructor recursion depth mismatch", fixed in later CPython releases).
status=0
python3 -m schemathesis.cli run "$repo/docs/openapi.json" \
    --url "http://$addr" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples 50 \
    --workers 1 \
    --generation-deterministic \
    || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- daemon log ---"
    cat "$project/daemon.log"
fi
exit "$status"
