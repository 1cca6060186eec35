# shellcheck shell=bash
# The pieces of a throw-away critest node, sourced by critest/run (critest against Carrack)
# and bench/critest (critest -benchmark against Carrack and containerd on one node): teardown
# helpers, packages, the stand-in images in a registry inside the node's network namespace,
# the CNI conflist and Carrack's config with every registry critest names mirrored.
#
# The sourcing script defines `log` and `die` and these variables first:
#   repo          the repository root
#   tmp           the node's temp dir (logs/, bin/, deb/, registry/, cni/ under it)
#   netns_path    /run/netns/<the node's network namespace>
#   cgroup_base   the node's cgroup parent (/<name>)
#   cni_dir       the CNI config dir
#   carrack_bin   where this run's carrack binary is installed (carrack-monitor beside it)

# Every registry host critest's images and benchmarks name; all mirrored to the node's.
critest_registry_hosts=(registry.k8s.io k8s.gcr.io gcr.io docker.io quay.io public.ecr.aws)
critest_registry=127.0.0.1:5000

# ---------------------------------------------------------------------------------------
# Teardown. Each step is best effort; one failure must not stop the rest.

stop_pid() { # pid grace-seconds: SIGTERM, then SIGKILL after the grace period
  local pid=$1 grace=${2:-10}
  [[ -n $pid ]] || return 0
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cgroup_hierarchies() { # every real cgroup hierarchy directory
  local dir
  for dir in /sys/fs/cgroup/*/; do
    [[ -L ${dir%/} ]] && continue
    [[ -d $dir ]] && printf '%s\n' "${dir%/}"
  done
  [[ -f /sys/fs/cgroup/cgroup.procs ]] && printf '%s\n' /sys/fs/cgroup
  return 0
}

node_cgroup_pids() { # [base]: pids in the cgroup subtree (default the node's), any hierarchy
  local base=${1:-$cgroup_base} hierarchy
  while read -r hierarchy; do
    [[ -d $hierarchy$base ]] || continue
    find "$hierarchy$base" -name cgroup.procs -exec cat {} + 2>/dev/null
  done < <(cgroup_hierarchies) | sort -u
}

carrack_pids() { # every process running this run's binaries (daemon, monitors, exec-in)
  local dir exe
  for dir in /proc/[0-9]*; do
    exe=$(readlink "$dir/exe" 2>/dev/null) || continue
    [[ $exe == "$carrack_bin" || $exe == "$carrack_bin-monitor" ]] && printf '%s\n' "${dir#/proc/}"
  done
  return 0
}

unmount_under() { # lazily unmount everything at or below $1, deepest first
  local dir=$1 round mounts
  for round in 1 2 3 4 5; do
    mounts=$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
      awk '{ print gsub("/", "/") " " $0 }' | sort -rn -k1,1 | cut -d' ' -f2-)
    [[ -n $mounts ]] || return 0
    while read -r mount; do
      umount -l "$mount" 2>/dev/null || true
    done <<<"$mounts"
  done
  log "warning: mounts remain under $dir"
}

remove_cgroups() { # [base]: kill everything in the subtree (default the node's), remove it
  local base=${1:-$cgroup_base} hierarchy pid
  for pid in $(node_cgroup_pids "$base"); do kill -KILL "$pid" 2>/dev/null; done
  while read -r hierarchy; do
    [[ -d $hierarchy$base ]] || continue
    [[ -f $hierarchy$base/freezer.state ]] &&
      find "$hierarchy$base" -name freezer.state -exec sh -c 'echo THAWED > "$1"' _ {} \; 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      find "$hierarchy$base" -depth -type d -exec rmdir {} \; 2>/dev/null
      [[ -d $hierarchy$base ]] || break
      sleep 0.5
    done
    [[ -d $hierarchy$base ]] && log "warning: could not remove $hierarchy$base"
  done < <(cgroup_hierarchies)
}

# ---------------------------------------------------------------------------------------
# Setup.

install_packages() { # package...: apt-get install those that are missing
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  export DEBIAN_FRONTEND=noninteractive
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  apt-get update -qq >>"$tmp/logs/apt.log" 2>&1 || log "apt-get update failed (see $tmp/logs/apt.log)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$tmp/logs/apt.log" 2>&1 ||
    die "apt-get install ${missing[*]} failed (see $tmp/logs/apt.log)"
}

# The packages a node needs (critest's specs need util-linux's ipcmk; nnp needs rustc).
critest_node_packages=(docker-registry containernetworking-plugins busybox-static iproute2 iptables
  util-linux procps protobuf-compiler python3 gcc libc6-dev)

check_node_tools() {
  local tool
  for tool in docker-registry busybox ip nsenter iptables ipcmk ipcrm python3 ldd rustc; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/portmap && -x /usr/lib/cni/host-local ]] ||
    die "/usr/lib/cni lacks bridge, portmap or host-local (containernetworking-plugins)"
}

fetch_busybox_dynamic() { # sets busybox_dynamic
  # The image's /bin/sh is Debian's dynamically linked busybox (package `busybox`, which
  # conflicts with busybox-static, so it is only downloaded and unpacked here): see images.py.
  log "fetching Debian's busybox package (the image's /bin/sh)"
  mkdir -p "$tmp/deb"
  chown _apt "$tmp/deb" 2>/dev/null || true
  if ! (cd "$tmp/deb" && apt-get download busybox >>"$tmp/logs/apt.log" 2>&1); then
    apt-get update -qq >>"$tmp/logs/apt.log" 2>&1 || true
    (cd "$tmp/deb" && apt-get download busybox >>"$tmp/logs/apt.log" 2>&1) ||
      die "apt-get download busybox failed (see $tmp/logs/apt.log)"
  fi
  dpkg-deb -x "$tmp"/deb/busybox_*.deb "$tmp/deb/root"
  busybox_dynamic=$tmp/deb/root/bin/busybox
  [[ -x $busybox_dynamic ]] || die "the busybox package has no /bin/busybox"
}

install_carrack() { # prebuilt-binary-or-empty profile: put carrack (+ monitor) at $carrack_bin
  # Copied into the temp dir so that a concurrent cargo run cannot swap it mid-run, and so
  # that every process of this run is recognisable by its executable.
  local prebuilt=$1 profile=$2 target_dir profile_args=()
  if [[ -n $prebuilt ]]; then
    log "using prebuilt $prebuilt"
    install -m 0755 "$prebuilt" "$carrack_bin"
    # The small per-container binary is used when it sits beside the daemon's.
    [[ -x $(dirname "$prebuilt")/carrack-monitor ]] &&
      install -m 0755 "$(dirname "$prebuilt")/carrack-monitor" "$carrack_bin-monitor"
    return 0
  fi
  log "building carrack ($profile)"
  [[ $profile == release ]] && profile_args=(--release)
  (cd "$repo" && cargo build "${profile_args[@]}" --locked --bin carrack --bin carrack-monitor) >"$tmp/logs/build-carrack.log" 2>&1 ||
    {
      tail -30 "$tmp/logs/build-carrack.log" >&2
      die "cargo build failed"
    }
  target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
  [[ -n $target_dir ]] || die "cargo metadata did not name the target dir"
  install -m 0755 "$target_dir/$profile/carrack" "$carrack_bin"
  install -m 0755 "$target_dir/$profile/carrack-monitor" "$carrack_bin-monitor"
}

build_nnp() { # the static setuid helper of the nonewprivs stand-in, at $tmp/bin/nnp
  log "building the static nnp helper"
  rustc --edition 2021 -O -C target-feature=+crt-static -C strip=symbols -C panic=abort \
    "$repo/critest/nnp.rs" -o "$tmp/bin/nnp" >"$tmp/logs/build-nnp.log" 2>&1 ||
    {
      cat "$tmp/logs/build-nnp.log" >&2
      die "building critest/nnp.rs failed"
    }
}

write_registry_config() { # Debian's docker-registry on $critest_registry, storage in the temp dir
  mkdir -p "$tmp/registry/storage"
  cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  formatter: text
storage:
  filesystem:
    rootdirectory: $tmp/registry/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $critest_registry
  secret: carrack-critest-registry
EOF
}

push_stand_ins() { # build the stand-in images (critest/images.py) and push them, in the node
  log "building and pushing the stand-in test images"
  nsenter --net="$netns_path" -- python3 "$repo/critest/images.py" --registry "$critest_registry" \
    --busybox-static "$(command -v busybox)" --busybox-dynamic "$busybox_dynamic" \
    --nnp "$tmp/bin/nnp" >"$tmp/logs/images.log" 2>&1 ||
    {
      cat "$tmp/logs/images.log" >&2
      die "critest/images.py failed"
    }
}

write_conflist() { # bridge (gateway, hairpin, host-local 10.88.0.0/16, no masquerade) + portmap
  mkdir -p "$cni_dir" "$tmp/cni/ipam"
  cat >"$cni_dir/10-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "carrack-critest",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "critestbr0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$tmp/cni/ipam",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

carrack_config() { # root-dir state-dir socket cgroup-parent log-level: Carrack's config.toml
  cat <<EOF
root_dir = "$1"
state_dir = "$2"
socket_path = "$3"

[log]
level = "$5"
format = "text"

[cgroups]
driver = "cgroupfs"
root = "/sys/fs/cgroup"
default_parent = "$4"

[cni]
conf_dir = "$cni_dir"
bin_dirs = ["/usr/lib/cni"]

[streaming]
address = "127.0.0.1:0"
EOF
  local host
  for host in "${critest_registry_hosts[@]}"; do
    printf '\n[registry.mirrors."%s"]\nendpoints = ["http://%s"]\nuse_upstream = false\n' "$host" "$critest_registry"
  done
}

wait_for_socket() { # pid socket name: until the daemon listens, or die if it exits first
  local pid=$1 socket=$2 what=$3 i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$socket" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -40 "$tmp/logs/$what.log" >&2
  die "$what did not start (log: $tmp/logs/$what.log)"
}
