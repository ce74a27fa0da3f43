#!/usr/bin/env bash
# WardWatch agent installer for Linux (systemd).
#
#   install.sh ENROLMENT-STRING [options]     install, enrol and start
#   install.sh --upgrade [options]            new version in place; identity and unsent alerts are kept
#   install.sh --uninstall --code CODE        tell the collector (it checks the code), then remove everything
#
# Options:
#   --prefix DIR     where the program goes (default /opt/wardwatch; it gets its own virtual environment)
#   --state DIR      identity, certificates and spool (default /var/lib/wardwatch/agent)
#   --root DIR       write unit files below DIR instead of / (image building, tests); nothing is started
#   --source DIR     install from this source tree (default: the tree this script is in)
#   --wheel FILE     install from a built wheel instead
#   --python EXE     Python 3.11+ to build the environment with (default python3)
#   --age-band BAND  primary | secondary | staff (default: the enrolment token's)
#   --no-start       write everything but do not start the service
set -euo pipefail

PROG=wardwatch-install
PREFIX=/opt/wardwatch
STATE=/var/lib/wardwatch/agent
ROOT=/
SOURCE=""
WHEEL=""
PYTHON=python3
AGE_BAND=""
MODE=install
CODE=""
START=1
ENROLMENT=""
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "$PROG: $*" >&2; exit 2; }
say() { echo "==> $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --state) STATE="${2:?--state needs a directory}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
    --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs an executable}"; shift 2 ;;
    --age-band) AGE_BAND="${2:?--age-band needs a value}"; shift 2 ;;
    --upgrade) MODE=upgrade; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --code) CODE="${2:?--code needs the uninstall code}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$ENROLMENT" ] || die "only one enrolment string, please"; ENROLMENT="$1"; shift ;;
  esac
done

case "$PREFIX$STATE" in *[[:space:]]*) die "--prefix and --state may not contain spaces" ;; esac
PREFIX="$(realpath -m "$PREFIX")"
STATE="$(realpath -m "$STATE")"
ROOT="$(realpath -m "$ROOT")"
AGENT="$PREFIX/venv/bin/wardwatch-agent"
SYSTEM_UNIT="$ROOT/etc/systemd/system/wardwatch-agent.service"
USER_UNIT="$ROOT/etc/systemd/user/wardwatch-session.service"
AUTOSTART="$ROOT/etc/xdg/autostart/wardwatch-session.desktop"
LAUNCHER="$PREFIX/bin/wardwatch-session-start"

# Units are started only on the live system, and only where systemd is running (not in a chroot or container).
use_systemd() { [ "$ROOT" = / ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

agent() { "$AGENT" --state "$STATE" "$@"; }

mark_maintenance() {
  # The service reports a stop without this marker to the technician as a coverage gap.
  [ -d "$STATE" ] && echo "$1" >"$STATE/maintenance" || true
}

stop_service() {
  if use_systemd && systemctl is-active --quiet wardwatch-agent.service; then
    systemctl stop wardwatch-agent.service
  fi
}

install_program() {
  local what
  if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "no wheel at $WHEEL"
    what="$WHEEL"
  else
    SOURCE="${SOURCE:-$(cd "$HERE/../.." && pwd)}"
    [ -f "$SOURCE/pyproject.toml" ] || die "no WardWatch source tree at $SOURCE (use --source DIR or --wheel FILE)"
    what="$SOURCE"
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is not Python 3.11 or newer (use --python)"
  if [ ! -x "$PREFIX/venv/bin/python" ]; then
    say "creating the program's own Python environment in $PREFIX/venv"
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$PREFIX/venv" || die "could not create a virtual environment (install python3-venv)"
  fi
  say "installing WardWatch (agent only) from $what"
  # The agent extra only: a classroom PC gets no web framework and no database driver.
  "$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$what[agent]" \
    || die "pip could not install WardWatch from $what"
  if [ "$MODE" = upgrade ]; then
    # The same version number from a rebuilt tree or wheel would otherwise count as already installed.
    "$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "$what" || die "pip could not reinstall WardWatch from $what"
  fi
}

write_units() {
  mkdir -p "$(dirname "$SYSTEM_UNIT")" "$(dirname "$USER_UNIT")" "$(dirname "$AUTOSTART")" "$PREFIX/bin"
  # The service owns identity, spool and uplink; it never captures keys (the helper does, in the user's
  # session), so it can be locked down hard. It needs: its state directory, the network, netlink for udev
  # (USB arrivals), raw reads of root-owned block devices (encryption check), and setuid/setgid to start a
  # killed helper again as its user. Keep the bounding set to exactly that.
  cat >"$SYSTEM_UNIT" <<UNIT
[Unit]
Description=WardWatch safeguarding agent
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=$AGENT --state $STATE run
Environment=WARDWATCH_STATE=$STATE
Restart=always
RestartSec=5
# Exit status 3: the collector decommissioned this device; do not start again.
RestartPreventExitStatus=3
UMask=0022
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$STATE
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=CAP_SETUID CAP_SETGID

[Install]
WantedBy=multi-user.target
UNIT
  # The helper runs in each desktop session as the user; systemd restarts it if it dies. It is started by the
  # XDG autostart entry below, which brings the session's display variables along.
  cat >"$USER_UNIT" <<UNIT
[Unit]
Description=WardWatch session helper (typed text and window titles, checked on this PC)
After=graphical-session-pre.target
PartOf=graphical-session.target

[Service]
Type=simple
ExecStart=$AGENT --state $STATE session
Restart=always
RestartSec=3
NoNewPrivileges=yes
UNIT
  cat >"$LAUNCHER" <<LAUNCH
#!/bin/sh
# Started by XDG autostart in every desktop session: hand the session to systemd --user when there is one.
if systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user import-environment DISPLAY XAUTHORITY WAYLAND_DISPLAY XDG_SESSION_TYPE 2>/dev/null
  exec systemctl --user start wardwatch-session.service
fi
exec $AGENT --state $STATE session
LAUNCH
  chmod 0755 "$LAUNCHER"
  cat >"$AUTOSTART" <<DESKTOP
[Desktop Entry]
Type=Application
Name=WardWatch session helper
Comment=Safeguarding monitor: checks typed text and window titles on this PC
Exec=$LAUNCHER
NoDisplay=true
X-GNOME-Autostart-enabled=true
X-GNOME-AutoRestart=true
DESKTOP
}

start_service() {
  if [ "$START" = 1 ] && use_systemd; then
    systemctl daemon-reload
    systemctl enable --now wardwatch-agent.service >/dev/null
    systemctl restart wardwatch-agent.service
    echo "started"
  elif [ "$START" = 1 ]; then
    echo "not started (no running systemd here); start it with: $AGENT --state $STATE run"
  else
    echo "not started (--no-start)"
  fi
}

summary() {
  local status
  status="$(agent status 2>/dev/null | sed 's/^/    /' || true)"
  cat <<TEXT

WardWatch agent $1.
  program:        $PREFIX ($("$AGENT" --version 2>/dev/null || echo unknown))
  state:          $STATE
  service unit:   $SYSTEM_UNIT ($2)
  session helper: $USER_UNIT, started by $AUTOSTART
$status
Check it with:    $AGENT --state $STATE status
Send a test:      $AGENT --state $STATE send-test-alert
TEXT
}

do_install() {
  [ -n "$ENROLMENT" ] || die "give the enrolment string from 'wardwatch-collector token create'"
  install_program
  if [ -f "$STATE/agent.json" ]; then
    say "already enrolled; keeping that identity (use --upgrade to update, --uninstall to remove)"
  else
    say "enrolling with the collector"
    mkdir -p "$STATE"
    agent enroll "$ENROLMENT" ${AGE_BAND:+--age-band "$AGE_BAND"}
  fi
  write_units
  summary installed "$(start_service)"
}

do_upgrade() {
  [ -f "$STATE/agent.json" ] || die "nothing to upgrade: no enrolled agent in $STATE"
  mark_maintenance upgrade
  stop_service
  install_program
  write_units
  summary upgraded "$(start_service)"
}

do_uninstall() {
  [ -n "$CODE" ] || die "uninstalling needs the uninstall code set on the collector: --uninstall --code CODE"
  [ -x "$AGENT" ] || die "no WardWatch installation in $PREFIX"
  mark_maintenance uninstall
  stop_service
  # The collector checks the code and marks the device removed; refused means nothing here is touched.
  if ! agent uninstall --code "$CODE"; then
    rm -f "$STATE/maintenance"
    if use_systemd; then systemctl start wardwatch-agent.service || true; fi
    die "uninstall refused; WardWatch stays installed and running"
  fi
  if use_systemd; then
    systemctl disable wardwatch-agent.service >/dev/null 2>&1 || true
  fi
  rm -f "$SYSTEM_UNIT" "$USER_UNIT" "$AUTOSTART"
  use_systemd && systemctl daemon-reload || true
  rm -rf "$PREFIX" "$STATE"
  echo
  echo "WardWatch removed from this PC; the collector shows it as removed."
}

case "$MODE" in
  install) do_install ;;
  upgrade) do_upgrade ;;
  uninstall) do_uninstall ;;
esac
