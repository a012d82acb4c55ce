#!/usr/bin/env bash
# Builds a runnable herd image on a machine without an image registry: a
# FROM scratch image holding the herd binary, the shared libraries it links
# (read with ldd), CA certificates and a non-root user. Nothing is pulled.
#
#   deploy/build-image.sh                 # release build, tags herd:local
#   HERD_BIN=target/debug/herd deploy/build-image.sh herd:test   # reuse a binary
#
# Prints the image size. The image behaves like deploy/Dockerfile's: user
# 10001, /data volume, `herd health` HEALTHCHECK, SIGTERM drains.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-herd:local}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
if [ -z "${HERD_BIN:-}" ]; then
  cargo build --release --locked -p herd-node --bin herd
  HERD_BIN=target/release/herd
fi
[ -x "$HERD_BIN" ] || { echo "build-image: $HERD_BIN is not an executable; build herd first or unset HERD_BIN" >&2; exit 2; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
install -D -m 0755 "$HERD_BIN" "$root/usr/local/bin/herd"
# Debug sections are not needed at run time (a debug build shrinks ~10x).
if command -v strip >/dev/null; then strip --strip-debug "$root/usr/local/bin/herd"; fi
# The dynamic loader and every library the binary links, at their paths.
ldd "$HERD_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  install -D -m 0644 "$lib" "$root$lib"
done
chmod 0755 "$root"/lib64/ld-linux-*.so.* 2>/dev/null || true
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nherd:x:10001:10001:herd:/data:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nherd:x:10001:\n' > "$root/etc/group"
install -d -m 1777 "$root/tmp"
install -d -m 0755 "$root/data"
# One tarball with numeric owners: everything root's, /data the herd user's
# (a named volume mounted there starts with the image's ownership).
tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./data -cf "$context/rootfs.tar" .
tar -C "$root" --numeric-owner --owner=10001 --group=10001 -rf "$context/rootfs.tar" ./data

cat > "$context/Dockerfile" <<DOCKERFILE
FROM scratch
ADD rootfs.tar /
LABEL org.opencontainers.image.title="herd" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.licenses="Apache-2.0"
ENV HERD_LISTEN=0.0.0.0:7100 HERD_HTTP=0.0.0.0:8100 LOG_FORMAT=json SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /data
EXPOSE 7100 8100
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 CMD ["herd", "health", "--quiet"]
ENTRYPOINT ["herd"]
CMD ["node"]
DOCKERFILE

rm -rf "$root"
du_size="$(du -sh "$context/rootfs.tar" | cut -f1)"
docker build --quiet -t "$tag" "$context" >/dev/null
size="$(docker image inspect "$tag" --format '{{.Size}}')"
echo "built $tag: $((size / 1024 / 1024)) MiB (root filesystem $du_size)"
