#!/usr/bin/env bash
# Make this machine able to run sandbox nodes: podman, an OCI runtime that works here, debootstrap,
# Debian's archive keyring (for debootstrap), Python's venv for the project's tools, and OpenIPMI's
# BMC simulator and ipmitool (the BMC tests).
# Installs missing tools only when running as root on an apt-based host; otherwise says what to install.
# Writes host-level podman configuration only when it detects a condition that needs it, and says so.
source "$(dirname "$0")/common.sh"

CONF_DROPIN=/etc/containers/containers.conf.d/50-gpu-node-sandbox.conf

install_missing_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    # runc is only required where crun cannot run (cgroup v1/hybrid), but it is small and harmless.
    command -v runc >/dev/null || missing+=(runc)
    # The project's virtualenv; Debian ships venv/ensurepip separately from python3.
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    # The BMC simulator's tests (tests/bmc_sim): ipmi_sim and sdrcomp, and ipmitool to read it.
    command -v ipmi_sim >/dev/null || missing+=(openipmi)
    command -v ipmitool >/dev/null || missing+=(ipmitool)
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root || ! command -v apt-get >/dev/null; then
        die "missing tools: ${missing[*]}. Install them with your package manager (e.g. 'sudo apt-get install ${missing[*]}'), then re-run."
    fi
    say "installing ${missing[*]} from the distribution"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

cgroup_is_v2() { [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; }

# Podman raises nofile/nproc for rootful containers; where this host forbids raising rlimits above
# its own hard limits (no CAP_SYS_RESOURCE), container start fails unless defaults stay below them.
rlimits_too_low() { [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 1048576 ]; }

configure_podman() {
    local lines=() reasons=()
    if ! cgroup_is_v2 && [ "$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null)" != runc ]; then
        lines+=('[engine]' 'runtime = "runc"')
        reasons+=("cgroups are v1/hybrid here, which crun does not support: using runc")
    fi
    if rlimits_too_low; then
        local nofile nproc
        nofile=$(( $(ulimit -Hn) < 8192 ? $(ulimit -Hn) : 8192 ))
        nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
        lines=('[containers]' "default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=${nproc}:${nproc}\"]" "${lines[@]}")
        reasons+=("this host cannot raise rlimits above nofile=$(ulimit -Hn): containers get nofile=${nofile}, nproc=${nproc}")
    fi
    [ ${#lines[@]} -eq 0 ] && return 0
    local wanted
    wanted=$(printf '# Written by gpu-node sandbox/host-setup.sh:\n'; printf '# %s\n' "${reasons[@]}"; printf '%s\n' "${lines[@]}")
    if [ -f "$CONF_DROPIN" ] && [ "$(cat "$CONF_DROPIN")" = "$wanted" ]; then
        return 0
    fi
    is_root || die "podman needs host configuration (${reasons[*]}); as root, write to $CONF_DROPIN:
$wanted"
    mkdir -p "$(dirname "$CONF_DROPIN")"
    printf '%s\n' "$wanted" >"$CONF_DROPIN"
    say "wrote $CONF_DROPIN:"
    printf '    %s\n' "${reasons[@]}" >&2
}

install_missing_tools
configure_podman
