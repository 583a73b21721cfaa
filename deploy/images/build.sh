#!/usr/bin/env bash
# Build the images offline: `build.sh [runner] [api] [sdk] [s3]` (the first three by default).
#
# Python packages come from a wheelhouse made on this host (.build/wheelhouse), so every
# `docker build` runs with --network none. BASE_IMAGE defaults to python:3.11-slim when the
# engine has it, else to a Debian base made by build-base.sh (debootstrap, no registry needed).
set -euo pipefail
cd "$(dirname "$0")/../.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(runner api sdk)
want_s3=false
for target in "${targets[@]}"; do [ "$target" = s3 ] && want_s3=true; done
python=${PYTHON:-.venv/bin/python}
tag=${IMAGE_TAG:-latest}

if [ -z "${BASE_IMAGE:-}" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1; then
    BASE_IMAGE=python:3.11-slim
  else
    bash deploy/images/build-base.sh fmu-gateway-base:bookworm
    BASE_IMAGE=fmu-gateway-base:bookworm
  fi
fi

# Pinned runtime requirements plus our two packages; pip's own cache makes repeat builds quick.
wheels=.build/wheelhouse
log=.build/wheelhouse.log
mkdir -p "$wheels"
rm -f "$wheels"/fmu_gateway_*.whl
wheel() { "$python" -m pip wheel -q --disable-pip-version-check --wheel-dir "$wheels" "$@" >>"$log" 2>&1 \
  || { cat "$log" >&2; echo "pip wheel $* failed" >&2; exit 1; }; }
: >"$log"
wheel -r private-api/requirements.txt
wheel --no-deps ./private-api ./open-sdk
wheel -c private-api/requirements.txt './open-sdk[arrow]'
# Wanted only below Python 3.11.3 (redis), e.g. by Debian bookworm's 3.11.2, so the host may not resolve it.
wheel 'async-timeout>=4.0.3'
# The bundled S3 server of deploy/docker-compose.yml (moto, in memory), only when asked for.
if $want_s3; then wheel 'moto[server]'; fi

# The runner image carries the runner and zygote scripts; the docker sandbox refuses an image built from others.
runner_digest=$(cat private-api/app/sandbox/runner.py private-api/app/sandbox/zygote.py | sha256sum | cut -d' ' -f1)
# The API and SDK images carry the digest of their sources, so a stale image is told from a current one.
source_digest=$("$python" deploy/images/source_digest.py)

build() {  # name dockerfile
  echo "building fmu-gateway-$1:$tag from $BASE_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "RUNNER_DIGEST=$runner_digest" --build-arg "SOURCE_DIGEST=$source_digest" -f "$2" -t "fmu-gateway-$1:$tag" . >/dev/null
}
for target in "${targets[@]}"; do
  case $target in
    runner) build runner private-api/runner.Dockerfile ;;
    api) build api private-api/Dockerfile ;;
    sdk) build sdk open-sdk/Dockerfile ;;
    s3) build s3 deploy/s3.Dockerfile ;;
    *) echo "unknown image '$target' (runner, api, sdk, s3)" >&2; exit 2 ;;
  esac
done
# Old dangling stages (the build cache of earlier requirements) would pile up in the engine.
docker image prune -f --filter until=72h >/dev/null
