#!/usr/bin/env bash
# Build the keyd:local image for the local compose cluster.
#
# Builds bin/keyd on the host (cgo on, dynamically linked; the image reuses
# the host's glibc, so host and image are the same Debian release), stages
# the binary, every library `ldd` lists and the ELF loader into
# bin/cluster-image/, together with the host's SoftHSM2 (the PKCS#11 module
# libsofthsm2.so, softhsm2-util to initialise a node's token, and their
# libraries, again from ldd), and builds deploy/Dockerfile FROM scratch with
# the legacy builder. Nothing is pulled. Safe to rerun: the staging directory
# is rebuilt from scratch each time and the layer cache does the rest;
# the previous image, once untagged, is removed.
#
# Environment: IMAGE (default keyd:local), GO (default go).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-keyd:local}
GO=${GO:-go}
STAGE="$ROOT/bin/cluster-image"
RUNTIME_UID=10001

cd "$ROOT"
echo "==> building bin/keyd"
CGO_ENABLED=1 "$GO" build -o bin/keyd ./cmd/keyd

echo "==> staging $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE/rootfs/usr/local/bin" "$STAGE/rootfs/tmp" "$STAGE/empty"
chmod 1777 "$STAGE/rootfs/tmp"
chmod 0700 "$STAGE/empty"
install -m 0755 bin/keyd "$STAGE/rootfs/usr/local/bin/keyd"

# SoftHSM2 from the host (scripts/setup-softhsm.sh installs it): each node
# reaches its own token through this module, exactly as on a host.
"$ROOT/scripts/setup-softhsm.sh" >/dev/null
SOFTHSM_MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
  if [ -f "$m" ]; then SOFTHSM_MODULE=$m; break; fi
done
SOFTHSM_UTIL=$(command -v softhsm2-util || true)
if [ -z "$SOFTHSM_MODULE" ] || [ -z "$SOFTHSM_UTIL" ]; then
  echo "cluster-image: SoftHSM2 module or softhsm2-util missing on the host" >&2
  exit 1
fi
# The image always has the module at /usr/lib/softhsm/libsofthsm2.so (the
# path the generated keyd.yaml names), whatever the host's layout.
install -D -m 0644 "$SOFTHSM_MODULE" "$STAGE/rootfs/usr/lib/softhsm/libsofthsm2.so"
install -D -m 0755 "$SOFTHSM_UTIL" "$STAGE/rootfs/usr/bin/softhsm2-util"

# Every absolute path ldd prints: "libc.so.6 => /lib/.../libc.so.6 (0x..)"
# and the loader line "/lib64/ld-linux-x86-64.so.2 (0x..)". linux-vdso has
# no path and is skipped. cp -L stores the file, not a dangling symlink.
libs=$(ldd bin/keyd | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' | sort -u)
if [ -z "$libs" ]; then
  echo "cluster-image: ldd listed no libraries for bin/keyd (static build?); refusing to guess" >&2
  exit 1
fi
libs="$libs $(ldd "$SOFTHSM_MODULE" "$SOFTHSM_UTIL" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' | grep -v ':$' | sort -u)"
# The loader named in the ELF header (ldd lists it too; this is a check).
interp=""
if command -v readelf >/dev/null; then
  interp=$(readelf -l bin/keyd | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
fi
for lib in $(printf '%s\n' $libs $interp | sort -u); do
  mkdir -p "$STAGE/rootfs$(dirname "$lib")"
  cp -L "$lib" "$STAGE/rootfs$lib"
  echo "    $lib"
done

echo "==> docker build $IMAGE (legacy builder, FROM scratch, uid $RUNTIME_UID)"
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log="$STAGE/build.log"
# The legacy builder prints a deprecation notice on stderr; show the log
# only when the build fails.
if ! DOCKER_BUILDKIT=0 docker build -t "$IMAGE" -f deploy/Dockerfile "$STAGE" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  # The old image is now untagged; drop it unless a container still uses it.
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi

# Smoke test: the binary starts in the image (loader and libc resolve),
# and so does softhsm2-util with the module's libraries.
docker run --rm --network none "$IMAGE" version
printf 'directories.tokendir = /tmp\nobjectstore.backend = file\nlog.level = ERROR\n' >"$STAGE/smoke-softhsm2.conf"
chmod 0644 "$STAGE/smoke-softhsm2.conf"
docker run --rm --network none -v "$STAGE/smoke-softhsm2.conf:/smoke.conf:ro" -e SOFTHSM2_CONF=/smoke.conf \
  --entrypoint /usr/bin/softhsm2-util "$IMAGE" --module /usr/lib/softhsm/libsofthsm2.so --show-slots >/dev/null

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "==> $IMAGE ${new_id:7:12} size $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}'))"
