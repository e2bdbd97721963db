#!/usr/bin/env bash
# Installs what UrbanPulse's local stack runs (see urbanpulse/stack): Mosquitto, PostgreSQL 15 with
# PostGIS, TimescaleDB built from Debian's source package, the Apache Kafka broker's jars, and a
# system user for Kafka.
#
# For Debian 12 (bookworm), run as root (or with sudo available).  Idempotent: every step checks
# first and skips what is already there, so a second run is a quick no-op.
#
# Environment:
#   URBANPULSE_STACK__CACHE_DIR  where downloads and builds go (default ~/.cache/urbanpulse)
#   URBANPULSE_TIMESCALEDB_SERIES  TimescaleDB major.minor the source package must carry (2.19)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${URBANPULSE_STACK__CACHE_DIR:-$HOME/.cache/urbanpulse}"
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_EXT_DIR="/usr/share/postgresql/${PG_MAJOR}/extension"
TIMESCALEDB_SERIES="${URBANPULSE_TIMESCALEDB_SERIES:-2.19}"
TIMESCALEDB_SUITE=trixie
DEBIAN_MIRROR="http://deb.debian.org/debian"
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KAFKA_POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"

say() { printf '[install-stack] %s\n' "$*"; }
die() { printf '[install-stack] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "run as root (or install sudo): packages must be installed"
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages -------------------------------------------------------------------------
RUNTIME_PACKAGES=(
    mosquitto
    mosquitto-clients  # mosquitto_pub/mosquitto_sub: the refusal tests' outside clients
    "postgresql-${PG_MAJOR}"
    "postgresql-client-${PG_MAJOR}"
    "postgresql-${PG_MAJOR}-postgis-3"
    "postgresql-${PG_MAJOR}-postgis-3-scripts"
    openjdk-17-jre-headless
    maven
)
# Only needed to build TimescaleDB; skipped when it is already installed.
BUILD_PACKAGES=(
    "postgresql-server-dev-${PG_MAJOR}"
    cmake gcc make dpkg-dev libssl-dev libkrb5-dev xz-utils ca-certificates
)

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

APT_UPDATED=0
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        is_installed "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    # Keep Debian from starting a system mosquitto/postgres while installing: our own servers run
    # on their own ports and data directories.  A policy-rc.d that already exists is left alone.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    local log="$CACHE_DIR/apt-install.log"
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1 || rc=$?
    if [ "$own_policy" -eq 1 ]; then
        $SUDO rm -f /usr/sbin/policy-rc.d
    fi
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$log" >&2
        die "apt-get install failed (exit $rc), full output in $log"
    fi
    say "  installed (apt output in $log)"
}

mkdir -p "$CACHE_DIR"
say "step 1/4: Debian packages"
apt_install "${RUNTIME_PACKAGES[@]}"
say "  ok: mosquitto, PostgreSQL ${PG_MAJOR}, PostGIS 3, Java, Maven"

# --- 2. TimescaleDB from Debian's source package --------------------------------------------------
say "step 2/4: TimescaleDB ${TIMESCALEDB_SERIES}.x (Apache-2.0 edition) for PostgreSQL ${PG_MAJOR}"
if [ -f "$PG_EXT_DIR/timescaledb.control" ]; then
    say "  already installed: $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$PG_EXT_DIR/timescaledb.control")"
else
    apt_install "${BUILD_PACKAGES[@]}"
    SRC_ROOT="$CACHE_DIR/timescaledb-src"
    APT_DIR="$CACHE_DIR/apt-${TIMESCALEDB_SUITE}-src"
    mkdir -p "$SRC_ROOT" "$APT_DIR/lists/partial" "$APT_DIR/sources.list.d"
    # A private source list, used only by the two apt-get calls below: the system's apt sources
    # stay as they were.  Bookworm's debian-archive-keyring carries trixie's signing keys.
    printf 'deb-src [signed-by=%s] %s %s main\n' "$DEBIAN_KEYRING" "$DEBIAN_MIRROR" \
        "$TIMESCALEDB_SUITE" >"$APT_DIR/sources.list"
    APT_OPTS=(
        -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
        -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
        -o "Dir::State::Lists=$APT_DIR/lists"
        -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"
    )
    say "  fetching the ${TIMESCALEDB_SUITE} source index"
    apt-get "${APT_OPTS[@]}" update -qq
    SRC_VERSION="$(apt-get "${APT_OPTS[@]}" source --print-uris -qq timescaledb 2>/dev/null \
        | awk '$2 ~ /^timescaledb_.*\.dsc$/ { sub(/^timescaledb_/, "", $2); sub(/\.dsc$/, "", $2); print $2; exit }')"
    [ -n "$SRC_VERSION" ] || die "no timescaledb source package found in Debian ${TIMESCALEDB_SUITE}"
    SRC_UPSTREAM="${SRC_VERSION#*:}"      # drop the epoch
    SRC_UPSTREAM="${SRC_UPSTREAM%-*}"     # and the Debian revision: as dpkg-source names the folder
    UPSTREAM="${SRC_UPSTREAM%%[+~]*}"     # 2.19.3+dfsg -> 2.19.3
    case "$UPSTREAM" in
        "$TIMESCALEDB_SERIES".*) ;;
        *) die "Debian ${TIMESCALEDB_SUITE} carries timescaledb $SRC_VERSION, expected ${TIMESCALEDB_SERIES}.x (set URBANPULSE_TIMESCALEDB_SERIES to accept it)" ;;
    esac
    say "  source package timescaledb $SRC_VERSION"
    SRC_DIR="$SRC_ROOT/timescaledb-$SRC_UPSTREAM"
    if [ ! -f "$SRC_DIR/bootstrap" ]; then
        rm -rf "$SRC_DIR"
        (cd "$SRC_ROOT" && apt-get "${APT_OPTS[@]}" source -qq timescaledb)
    fi
    [ -f "$SRC_DIR/bootstrap" ] || die "unpacked source not found in $SRC_DIR"
    say "  configuring (APACHE_ONLY, no regression/TAP checks)"
    (
        cd "$SRC_DIR"
        rm -rf build
        ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
            -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
            -DPG_CONFIG="$PG_BIN/pg_config" >"$SRC_ROOT/configure.log" 2>&1 \
            || { tail -n 40 "$SRC_ROOT/configure.log" >&2; exit 1; }
        say "  building with $(nproc) jobs (about a minute)"
        make -C build -j"$(nproc)" >"$SRC_ROOT/build.log" 2>&1 \
            || { tail -n 40 "$SRC_ROOT/build.log" >&2; exit 1; }
        say "  installing into PostgreSQL ${PG_MAJOR}"
        $SUDO make -C build install >"$SRC_ROOT/install.log" 2>&1 \
            || { tail -n 40 "$SRC_ROOT/install.log" >&2; exit 1; }
    ) || die "TimescaleDB build failed (logs in $SRC_ROOT)"
    [ -f "$PG_EXT_DIR/timescaledb.control" ] || die "TimescaleDB installed no control file"
    say "  installed TimescaleDB $UPSTREAM"
fi

# --- 3. Kafka broker jars from Maven Central -------------------------------------------------------
say "step 3/4: Apache Kafka $KAFKA_VERSION broker jars"
[ -n "$KAFKA_VERSION" ] || die "no <kafka.version> in $KAFKA_POM"
if [ -f "$KAFKA_LIBS/.complete" ]; then
    say "  already in $KAFKA_LIBS"
else
    command -v mvn >/dev/null || die "mvn not found"
    TMP_LIBS="$KAFKA_LIBS.tmp"
    rm -rf "$TMP_LIBS"
    mkdir -p "$TMP_LIBS"
    say "  resolving with Maven into $KAFKA_LIBS"
    # --strict-checksums: an artifact whose SHA-1/MD5 does not match the repository's checksum
    # file fails the install (Maven's default only warns and uses it anyway).
    mvn -q -B --strict-checksums -Dstyle.color=never -f "$KAFKA_POM" \
        dependency:copy-dependencies -DoutputDirectory="$TMP_LIBS" \
        || die "mvn dependency:copy-dependencies failed"
    # The broker's entry points must be there.
    CORE_JAR="$TMP_LIBS/kafka_2.13-$KAFKA_VERSION.jar"
    [ -f "$CORE_JAR" ] || die "missing $CORE_JAR"
    python3 - "$CORE_JAR" <<'EOF' || die "kafka.Kafka or kafka.tools.StorageTool missing from the core jar"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
sys.exit(0 if {"kafka/Kafka.class", "kafka/tools/StorageTool.class"} <= names else 1)
EOF
    rm -rf "$KAFKA_LIBS"
    mv "$TMP_LIBS" "$KAFKA_LIBS"
    touch "$KAFKA_LIBS/.complete"
    say "  $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars in $KAFKA_LIBS"
fi

# --- 4. A system user for the Kafka broker ---------------------------------------------------------
# Started as root, the stack runs every server as its own unprivileged user: Debian's packages
# create mosquitto's and postgres's; Kafka, run from jars, gets one here.
say "step 4/4: the kafka system user"
if id -u kafka >/dev/null 2>&1; then
    say "  already there"
else
    $SUDO useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kafka
    say "  created"
fi

say "done"
