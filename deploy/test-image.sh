#!/usr/bin/env bash
# Builds a tiny test image from Debian's busybox-static as a `docker save` archive, so a new
# node can run a container without any registry:
#
#   bash deploy/test-image.sh /usr/local/share/carrack/busybox.tar
#   carrack image import /usr/local/share/carrack/busybox.tar
#   carrack run --rm carrack.local/busybox echo hello
#
# The archive is reproducible (fixed times and owners): the same busybox gives the same
# image id.
set -euo pipefail
out=${1:?usage: test-image.sh OUTPUT.tar}
busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1; then
  echo "test-image.sh: $busybox not found: apt-get install busybox-static" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,var,usr} "$work/layer"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -f "$root/bin/busybox" "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer/layer.tar" .

diff_id=sha256:$(sha256sum "$work/layer/layer.tar" | cut -d' ' -f1)
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"deploy/test-image.sh: Debian busybox-static"}]}' \
  "$arch" "$diff_id" >"$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/$config.json"
printf '[{"Config":"%s.json","RepoTags":["carrack.local/busybox:latest"],"Layers":["layer/layer.tar"]}]' "$config" >"$work/manifest.json"
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out.tmp" manifest.json "$config.json" layer/layer.tar
mv "$out.tmp" "$out"
echo "built $out (carrack.local/busybox:latest, sha256:$config)"
