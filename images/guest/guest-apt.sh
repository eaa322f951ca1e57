# Sourced by build.sh (not run). The guest images' Debian package sources, and a private apt state
# (lists, cache; never the host's) under the image cache that resolves the exact package versions
# an image would get from the mirror now. Those versions are part of each image's cache key, so
# an image is rebuilt when the mirror publishes an update of any package in it.
#
#   WAGGLE_GUEST_SUITE      Debian suite of the guest images (default trixie)
#   WAGGLE_GUEST_SOURCES    a sources.list file to use instead of the suite's defaults
#                           (<suite>, <suite>-updates, <suite>-security from deb.debian.org)
#   WAGGLE_GUEST_APT_MAX_AGE  seconds the package lists are trusted before `apt-get update`
#                           runs again (default 300: one node start resolves several images)

GUEST_SUITE=${WAGGLE_GUEST_SUITE:-trixie}

guest_sources() { # -> the sources.list lines that both the key and mmdebstrap use
  if [ -n "${WAGGLE_GUEST_SOURCES:-}" ]; then
    cat "$WAGGLE_GUEST_SOURCES"
    return
  fi
  echo "deb http://deb.debian.org/debian $GUEST_SUITE main"
  case "$GUEST_SUITE" in
    sid | unstable | experimental) ;; # no -updates or -security suites
    *)
      echo "deb http://deb.debian.org/debian $GUEST_SUITE-updates main"
      echo "deb http://deb.debian.org/debian-security $GUEST_SUITE-security main"
      ;;
  esac
}

# Sets GUEST_APT (the state directory) and exports APT_CONFIG (read by apt-get/apt-cache before
# anything else, so the host's /etc/apt configuration, sources and dpkg status stay out of it)
# and WAGGLE_GUEST_SOURCES_LIST (the sources file handed to mmdebstrap).
guest_apt_write() { # file content: replaced atomically, and only when it differs (other builds read it)
  [ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
  printf '%s\n' "$2" > "$1.$$" && mv -f "$1.$$" "$1"
}

guest_apt_setup() { # cache-dir
  local sources dir
  sources=$(guest_sources)
  dir="$1/.apt-$(printf '%s\n' "$sources" | sha256sum | cut -c1-12)"
  mkdir -p "$dir"/etc/apt.conf.d "$dir"/etc/preferences.d "$dir"/etc/sources.list.d \
    "$dir"/lists/partial "$dir"/cache/archives/partial "$dir"/state "$dir"/keys
  guest_apt_write "$dir/etc/sources.list" "$sources"
  [ -f "$dir/state/status" ] || : > "$dir/state/status" # nothing installed: resolve everything
  guest_apt_write "$dir/apt.conf" "$(
    cat <<EOF
Dir::Etc "$dir/etc";
Dir::Etc::trusted "/etc/apt/trusted.gpg";
Dir::Etc::trustedparts "/etc/apt/trusted.gpg.d/";
Dir::State "$dir/state";
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "1";
Acquire::http::Timeout "15";
Acquire::https::Timeout "15";
EOF
  )"
  GUEST_APT=$dir
  export APT_CONFIG="$dir/apt.conf" WAGGLE_GUEST_SOURCES_LIST="$dir/etc/sources.list" WAGGLE_GUEST_APT_LOCK="$dir/lock"
}

# Refreshes the package lists unless they are younger than WAGGLE_GUEST_APT_MAX_AGE; fails
# (status 1, apt's last lines on stderr) when the mirror cannot be reached.
guest_apt_update() {
  local stamp="$GUEST_APT/lists/.updated" max_age=${WAGGLE_GUEST_APT_MAX_AGE:-300} out
  if [ -f "$stamp" ] && [ $(($(date +%s) - $(stat -c %Y "$stamp"))) -lt "$max_age" ]; then
    return 0
  fi
  if out=$(apt-get update -q 2>&1) && ! grep -qE '^(E: |W: Failed to fetch|Err:)' <<<"$out"; then
    touch "$stamp"
    return 0
  fi
  grep -E '^[WE]: |^Err' <<<"$out" | tail -5 >&2
  return 1
}

# The exact versions apt would install into an empty root, as the package files it would download
# ("<name>_<version>_<arch>.deb"): for `minbase`, what mmdebstrap --variant=minbase selects (the
# suite's Essential and Priority: required packages, and apt; the same apt patterns) plus the
# packages, with all their dependencies; for `exact`, only the named packages.
guest_resolve() { # minbase|exact packages...
  local mode=$1 files narrow
  shift
  local -a sel=("$@")
  if [ "$mode" = minbase ]; then
    narrow="?narrow(?or(?archive(^$GUEST_SUITE\$),?codename(^$GUEST_SUITE\$)),?architecture($(dpkg --print-architecture))"
    sel=("$narrow,?essential)" apt "$narrow,?and(?priority(required),?not(?essential)))" "$@")
  fi
  files=$(apt-get install --print-uris -qq "${sel[@]}") || return 1
  files=$(awk '{print $2}' <<<"$files" | sort)
  if [ "$mode" = exact ]; then
    grep -E "^($(printf '%s\n' "$@" | paste -sd'|' -))_" <<<"$files"
  else
    printf '%s\n' "$files"
  fi
}

# A hash of the exact versions the mirror would install now for a package set. Cheap when
# nothing changed: the lists are refreshed (If-Modified-Since) and, when no Release file changed
# since the set was last resolved, the previous answer is reused. When the mirror cannot be
# reached, the last resolved hash is used with a warning, so a node that built its images before
# finds them offline; with none, it fails.
guest_packages_key() { # minbase|exact packages... -> 12 hex chars
  local id memo fingerprint resolved hash
  id=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
  memo="$GUEST_APT/keys/$id"
  if (
    flock 9
    guest_apt_update || exit 1
    fingerprint=$(cat "$GUEST_APT"/lists/*Release 2>/dev/null | sha256sum | cut -c1-16)
    if [ -f "$memo" ] && [ "$(cut -d' ' -f1 "$memo")" = "$fingerprint" ]; then
      touch "$memo" # checked now: still what the mirror serves
      exit 0
    fi
    resolved=$(guest_resolve "$@") && [ -n "$resolved" ] || exit 1
    hash=$(printf '%s\n' "$resolved" | sha256sum | cut -c1-12)
    printf '%s %s\n' "$fingerprint" "$hash" > "$memo.tmp"
    printf '%s\n' "$resolved" > "$GUEST_APT/keys/$id.versions"
    mv "$memo.tmp" "$memo"
  ) 9> "$WAGGLE_GUEST_APT_LOCK"; then
    cut -d' ' -f2 "$memo"
  elif [ -f "$memo" ]; then
    echo "build.sh: warning: cannot resolve package versions from the mirror ($(sed 's/^deb //' "$GUEST_APT/etc/sources.list" | head -1) ...); using those last resolved, at $(date -u -r "$memo" +%FT%TZ)" >&2
    cut -d' ' -f2 "$memo"
  else
    echo "build.sh: cannot resolve package versions from the mirror and none were resolved before; is a Debian mirror reachable?" >&2
    return 1
  fi
}
