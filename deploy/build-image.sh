#!/usr/bin/env bash
# Build the API image (deploy/Dockerfile) with podman, on a machine without a Docker engine or a
# reachable image registry:
#
#   deploy/build-image.sh                  # prints the image name last; EVX_IMAGE overrides it
#   deploy/build-image.sh --refresh-base   # bootstrap the base again (security updates)
#
# 1. The Python base image is bootstrapped from Debian packages (bookworm: python3 3.11, the
#    version the official python:3.11-slim-bookworm image has) with mmdebstrap, from the Debian
#    mirror this machine's apt uses, and imported with `podman import`. It is kept and reused
#    while its package list and mirrors are the same (the tag carries their digest).
# 2. deploy/Dockerfile is built with PYTHON_IMAGE pointing at that base. pip inside the build
#    uses the host's network and CA bundle (mounted read-only).
#
# Needs root, podman, runc and mmdebstrap (Debian packages; .ci/run installs them). With a Docker
# engine and a registry, `docker build -f deploy/Dockerfile .` uses the official base instead.
set -euo pipefail
cd "$(dirname "$0")/.."

refresh=0
[ "${1:-}" = "--refresh-base" ] && refresh=1
suite=bookworm
# The base is only a Python runtime: no apt, no pip (the Dockerfile's build stage makes its own
# virtual environment; python3-venv brings ensurepip's wheels for that).
# usr-is-merged (with mmdebstrap's merged-usr hook) instead of the usrmerge package, which would
# bring a full perl (~50 MB).
packages=(python3 python3-venv ca-certificates tzdata passwd usr-is-merged)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)
image=${EVX_IMAGE:-localhost/evidence-exchange:$version}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
podman_() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }

for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-image: $tool is missing (apt-get install podman runc mmdebstrap)" >&2; exit 2; }
done

# The Debian archives this machine's apt uses for the suite and its security updates.
mirrors=()
while read -r uri release; do
  mirrors+=("deb $uri $release main")
done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' 'Created-By: Packages' \
           | awk -v s="$suite" '$3 == "Debian" && ($2 == s || $2 == s "-updates" ||
                                                   $2 == s "-security") {print $1, $2}' \
           | sort -u)
if [ "${#mirrors[@]}" -eq 0 ]; then
  echo "build-image: apt has no Debian $suite archive configured (see /etc/apt/sources.list.d)" >&2
  exit 2
fi

key=$(printf '%s\n' "$suite" "${packages[@]}" "${mirrors[@]}" | sha256sum | cut -c1-12)
base=localhost/evx-python-base:$suite-$key
started=$(date +%s)

if [ "$refresh" = 1 ] || ! podman_ image exists "$base"; then
  echo "build-image: bootstrapping $base (${packages[*]})" >&2
  # Only the essential set plus the packages (no apt, no recommends, no documentation); dpkg's
  # own database stays, so the image's contents can be listed (`dpkg -l`) and scanned.
  mmdebstrap --quiet --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/log/*' \
    "$suite" - "${mirrors[@]}" \
    | podman_ import --change 'CMD ["python3"]' \
        --message "mmdebstrap $suite ${packages[*]}" - "$base" >/dev/null
fi
bootstrapped=$(date +%s)

podman_ build --format docker --network host \
  --volume "$ca_bundle:$ca_bundle:ro" \
  --build-arg "PYTHON_IMAGE=$base" \
  --ignorefile deploy/Dockerfile.dockerignore \
  -f deploy/Dockerfile -t "$image" . >&2
done_at=$(date +%s)
# Each change to the code leaves the previous build's cache layers behind (~110 MB each): drop
# those older than a day, untagged and unused (the base and tagged images stay).
podman_ image prune --force --filter until=24h >/dev/null || true

size=$(podman_ image inspect --format '{{.Size}}' "$image")
echo "build-image: $image: $((size / 1000000)) MB; base $((bootstrapped - started)) s," \
     "image build $((done_at - bootstrapped)) s" >&2
echo "$image"
