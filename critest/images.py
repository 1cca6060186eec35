#!/usr/bin/env python3
"""Builds the stand-ins of critest's test images and pushes them to the node's registry.

critest pulls its images from registry.k8s.io, k8s.gcr.io and gcr.io (its image benchmarks
from public.ecr.aws); `critest/run` mirrors those hosts to a local registry, so each image is pushed here under its repository path
(`registry.k8s.io/e2e-test-images/busybox:1.29-2` -> `e2e-test-images/busybox:1.29-2`).
Nothing is downloaded: every layer is a tar written here from files on this machine
(Debian's busybox-static and busybox packages, a few shell scripts, and the static `nnp`
helper built by `critest/run`). Output is deterministic (fixed owners and mtimes, sorted
entries, gzip without a timestamp), so an image has the same digest in every run.

The base layer (every image has it):
- `/bin/busybox` (static) with each applet as a hard link in `/bin`, except `sh`/`ash`. A
  hard link, not a symlink: critest masks `/bin/ls` and a symlink would mask busybox itself.
- `/bin/sh` and `/bin/ash`: Debian's dynamically linked busybox, plus the shared libraries it
  needs. The static build is a "standalone shell" that runs applets in-process instead of
  executing them through PATH, which defeats critest's MaskedPaths spec (it expects
  `/bin/sh: ls: Permission denied`); the dynamic build executes them.
- `/bin/pgrep` and `/bin/ipcs`: small shell stand-ins (neither Debian busybox has them).
- `/etc/passwd` (root, nobody, www-data) and `/etc/group`, `/tmp` (1777).

Only the Python 3 standard library is used.
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
import urllib.parse

# Every entry's modification time and the images' `created` (2024-01-01T00:00:00Z).
MTIME = 1_704_067_200
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = "root:x:0:\nwww-data:x:33:\nnobody:x:65534:\n"

# `pgrep NAME`: critest runs `sh -c "pgrep sleep || true"` to check that an exec timed out
# was killed; stdout must then be empty and stderr too.
PGREP = """#!/bin/sh
# pgrep NAME: pids of the processes named NAME (stand-in; Debian's busybox has no pgrep).
found=1
for dir in /proc/[0-9]*; do
  name=$(cat "$dir/comm" 2>/dev/null) || continue
  if [ "$name" = "$1" ]; then
    echo "${dir#/proc/}"
    found=0
  fi
done
exit $found
"""

# `ipcs -m`: critest looks for the id of a segment it made on the node (HostIpc true) or its
# absence (HostIpc false).
IPCS = """#!/bin/sh
# ipcs [-m]: the shared memory segments of this IPC namespace (stand-in; Debian's busybox
# has no ipcs). Read from /proc/sysvipc/shm.
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
awk 'NR > 1 { printf "%-10s %-10s %-10s %-10s %-10s %-10s\\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
"""

# nginx stand-in: PID 1 is this script (process name `nginx`, so `pidof nginx` finds it),
# re-executed once so that its command line holds "master process" like nginx's master;
# it writes its pid to /var/run/nginx.pid and serves its html dir with busybox httpd.
NGINX = """#!/bin/sh
# Stand-in for nginx (critest's nginx test images): busybox httpd on $NGINX_PORT.
if [ "$1" != "master process" ]; then
  exec /usr/sbin/nginx "master process" "$@"
fi
echo $$ >/var/run/nginx.pid
httpd -f -p "${NGINX_PORT:-80}" -h /usr/share/nginx/html &
server=$!
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT QUIT
wait "$server"
"""

# httpd stand-in: writes a line naming httpd to its log (critest looks for "httpd" there),
# then serves its html dir on port 80.
HTTPD = """#!/bin/sh
# Stand-in for Apache httpd (critest's httpd test image): busybox httpd on port 80.
echo "httpd: busybox httpd serving /usr/local/apache2/htdocs on port 80"
httpd -f -p 80 -h /usr/local/apache2/htdocs &
server=$!
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT QUIT
wait "$server"
"""

# pause stand-in: runs (as 65535) until SIGTERM or SIGINT.
PAUSE = """#!/bin/sh
# Stand-in for the pause container: waits for SIGTERM or SIGINT.
trap 'exit 0' TERM INT
while :; do
  sleep 3600 &
  wait $!
done
"""

INDEX_HTML = b"<html><body><h1>It works!</h1></body></html>\n"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_arch():
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)


class Layer:
    """A layer tar built in memory: entries in the order added, parents added on demand."""

    def __init__(self, description):
        self.description = description
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT)
        self.names = set()

    def _info(self, path, kind, mode, size=0):
        info = tarfile.TarInfo(path)
        info.type = kind
        info.mode = mode
        info.size = size
        info.mtime = MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path, mode=0o755):
        path = path.strip("/")
        if path in self.names:
            return self
        self._parents(path)
        self.names.add(path)
        self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode))
        return self

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        if isinstance(data, str):
            data = data.encode()
        self._parents(path)
        self.names.add(path)
        self.tar.addfile(self._info(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        return self

    def hard_link(self, path, target):
        path = path.strip("/")
        self._parents(path)
        self.names.add(path)
        info = self._info(path, tarfile.LNKTYPE, 0o755)
        info.linkname = target.strip("/")
        self.tar.addfile(info)
        return self

    def finish(self):
        """Returns (gzip blob, blob digest, diff id)."""
        self.tar.close()
        raw = self.buffer.getvalue()
        blob = gzip.compress(raw, compresslevel=6, mtime=0)
        return blob, sha256(blob), sha256(raw)


def applets(busybox):
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True)
    names = sorted({n.strip() for n in out.stdout.split() if n.strip() and "/" not in n})
    names = [n for n in names if n != "busybox"]
    if "sh" not in names:
        sys.exit(f"images.py: {busybox} has no sh applet")
    return names


def shared_libraries(binary):
    """(path in the image, path on this machine) of each library `binary` loads."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words:
            path = words[words.index("=>") + 1]
        elif words and words[0].startswith("/"):
            path = words[0]  # the dynamic loader
        else:
            continue  # linux-vdso
        if not path.startswith("/"):
            sys.exit(f"images.py: ldd {binary}: cannot resolve {line.strip()}")
        libs.append((path, os.path.realpath(path)))
    return libs


def base_layer(busybox_static, busybox_dynamic):
    layer = Layer("busybox root filesystem")
    for path, mode in [
        ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("lib", 0o755),
        ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755),
        ("usr/bin", 0o755), ("usr/sbin", 0o755), ("usr/local/bin", 0o755),
        ("var", 0o755), ("var/run", 0o755), ("var/www", 0o755),
    ]:
        layer.dir(path, mode)
    with open(busybox_static, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    with open(busybox_dynamic, "rb") as f:
        layer.file("bin/sh", f.read(), 0o755)
    layer.hard_link("bin/ash", "bin/sh")
    for image_path, host_path in shared_libraries(busybox_dynamic):
        with open(host_path, "rb") as f:
            layer.file(image_path, f.read(), 0o755)
    for name in applets(busybox_static):
        if name not in ("sh", "ash"):
            layer.hard_link("bin/" + name, "bin/busybox")
    layer.file("bin/pgrep", PGREP, 0o755)
    layer.file("bin/ipcs", IPCS, 0o755)
    layer.file("etc/passwd", PASSWD).file("etc/group", GROUP)
    return layer.finish()


def single_file_layer(description, files):
    layer = Layer(description)
    for path, data, mode in files:
        layer.file(path, data, mode)
    return layer.finish()


class Image:
    def __init__(self, layers, config):
        self.layers = layers  # [(blob, digest, diff_id)]
        cfg = {"Env": [PATH_ENV]}
        cfg.update(config)
        self.config = json.dumps(
            {
                "architecture": go_arch(),
                "os": "linux",
                "created": CREATED,
                "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": [l[2] for l in layers]},
                "history": [{"created": CREATED, "created_by": "carrack critest/images.py"}
                            for _ in layers],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(self.config),
                           "size": len(self.config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": l[1], "size": len(l[0])}
                           for l in layers],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        self.id = sha256(self.config)
        self.digest = sha256(self.manifest)


class Registry:
    def __init__(self, address):
        self.address = address

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(self.address, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, response.headers, data
        finally:
            connection.close()

    def wait_ready(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            try:
                status, _, _ = self.request("GET", "/v2/")
                if status == 200:
                    return
                why = f"HTTP {status}"
            except OSError as err:
                why = str(err)
            if time.monotonic() > deadline:
                sys.exit(f"images.py: registry {self.address} not ready after {seconds}s: {why}")
            time.sleep(0.2)

    def push_blob(self, repo, digest, data):
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            sys.exit(f"images.py: start upload to {repo}: HTTP {status} {body[:200]!r}")
        location = urllib.parse.urlsplit(headers["Location"])
        query = (location.query + "&" if location.query else "") + "digest=" + digest
        status, _, body = self.request(
            "PUT", f"{location.path}?{query}", body=data,
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(len(data))})
        if status != 201:
            sys.exit(f"images.py: upload {digest} to {repo}: HTTP {status} {body[:200]!r}")

    def push(self, image, repo, tag):
        for blob, digest, _ in image.layers:
            self.push_blob(repo, digest, blob)
        self.push_blob(repo, sha256(image.config), image.config)
        status, _, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", body=image.manifest,
            headers={"Content-Type": OCI_MANIFEST})
        if status != 201:
            sys.exit(f"images.py: put manifest {repo}:{tag}: HTTP {status} {body[:200]!r}")


def build_images(args):
    """[(repository, [tags], Image)] of every stand-in."""
    base = base_layer(args.busybox_static, args.busybox_dynamic)
    with open(args.nnp, "rb") as f:
        nnp = f.read()

    def on_base(config, *extra):
        return Image([base, *extra], config)

    nginx_files = [("usr/sbin/nginx", NGINX, 0o755),
                   ("usr/share/nginx/html/index.html", INDEX_HTML, 0o644)]
    nginx = single_file_layer("nginx stand-in", nginx_files)
    httpd = single_file_layer("httpd stand-in", [
        ("usr/local/bin/httpd-foreground", HTTPD, 0o755),
        ("usr/local/apache2/htdocs/index.html", INDEX_HTML, 0o644)])
    pause = single_file_layer("pause stand-in", [("pause", PAUSE, 0o755)])
    nonewprivs = single_file_layer("nonewprivs stand-in", [("usr/local/bin/nnp", nnp, 0o4755)])

    def marker(name):  # one empty file, like cri-tools' image-test Dockerfile's `ADD ${TEST}`
        return single_file_layer(name, [(name, b"", 0o644)])

    predefined = single_file_layer("predefined group", [
        ("etc/passwd", PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n", 0o644),
        ("etc/group", GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
         0o644)])

    staging = "k8s-staging-cri-tools/"
    return [
        ("e2e-test-images/busybox", ["1.29-2"], on_base({"Cmd": ["sh"]})),
        ("e2e-test-images/nginx", ["1.14-2"],
         on_base({"Cmd": ["nginx", "-g", "daemon off;"], "Env": [PATH_ENV, "NGINX_PORT=80"],
                  "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM"}, nginx)),
        (staging + "hostnet-nginx-" + go_arch(), ["latest"],
         on_base({"Cmd": ["nginx", "-g", "daemon off;"], "Env": [PATH_ENV, "NGINX_PORT=12003"],
                  "ExposedPorts": {"12003/tcp": {}}}, nginx)),
        ("e2e-test-images/httpd", ["2.4.39-4"],
         on_base({"Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}}}, httpd)),
        ("e2e-test-images/nonewprivs", ["1.3"], on_base({"Cmd": ["nnp"]}, nonewprivs)),
        # registry.k8s.io/pause and k8s.gcr.io/pause are both mirrored to this one repository,
        # so the two names give the same image (critest checks the id is the same).
        ("pause", ["3.9"],
         on_base({"Entrypoint": ["/pause"], "User": "65535:65535"}, pause)),
        (staging + "test-image-latest", ["latest"], on_base({"Cmd": ["sh"]}, marker("latest"))),
        (staging + "test-image-tag", ["test"], on_base({"Cmd": ["sh"]}, marker("test"))),
        (staging + "test-image-tag", ["all"], on_base({"Cmd": ["sh"]}, marker("all"))),
        (staging + "test-image-1", ["latest"], on_base({"Cmd": ["sh"]}, marker("test-image-1"))),
        (staging + "test-image-2", ["latest"], on_base({"Cmd": ["sh"]}, marker("test-image-2"))),
        (staging + "test-image-3", ["latest"], on_base({"Cmd": ["sh"]}, marker("test-image-3"))),
        (staging + "test-image-tags", ["1", "2", "3"],
         on_base({"Cmd": ["sh"]}, marker("test-image-tags"))),
        (staging + "test-image-user-uid", ["latest"], on_base({"Cmd": ["sh"], "User": "1002"})),
        (staging + "test-image-user-username", ["latest"],
         on_base({"Cmd": ["sh"], "User": "www-data"})),
        (staging + "test-image-user-uid-group", ["latest"],
         on_base({"Cmd": ["sh"], "User": "1003:1004"})),
        (staging + "test-image-user-username-group", ["latest"],
         on_base({"Cmd": ["sh"], "User": "www-data:1004"})),
        (staging + "test-image-predefined-group", ["latest"],
         on_base({"Cmd": ["sh"], "User": "1000"}, predefined)),
        # The image benchmarks' defaults (pkg/benchmark/image.go): the first is pulled, status'd
        # and removed over and over, all of them are removed after the listing benchmark.
        # Distinct images, as upstream: base + a marker naming the tag.
        *[("docker/library/busybox", [tag], on_base({"Cmd": ["sh"]}, marker("busybox-" + tag)))
          for tag in ["1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"]],
        # Not built: gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...: only
        # the published image has that digest.
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", required=True, help="host:port of the registry")
    parser.add_argument("--busybox-static", default="/bin/busybox")
    parser.add_argument("--busybox-dynamic", required=True,
                        help="Debian's dynamically linked busybox (package busybox)")
    parser.add_argument("--nnp", required=True, help="the static nnp helper (critest/nnp.rs)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for the registry")
    args = parser.parse_args()

    registry = Registry(args.registry)
    registry.wait_ready(args.timeout)
    for repo, tags, image in build_images(args):
        for tag in tags:
            registry.push(image, repo, tag)
            print(f"{repo}:{tag} id {image.id} digest {image.digest}")


if __name__ == "__main__":
    main()
