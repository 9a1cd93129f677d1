#!/bin/sh
# Runs inside the debootstrapped root (chroot) and turns it into a sandbox node.
# Changing this file rebuilds the image.
set -eu

# A server's usual apt sources, with the components NVIDIA's Debian packages live in.
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<SOURCES
Types: deb
URIs: ${SANDBOX_MIRROR}
Suites: ${SANDBOX_SUITE} ${SANDBOX_SUITE}-updates
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SANDBOX_SECURITY_MIRROR}
Suites: ${SANDBOX_SUITE}-security
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Trust what the host trusts (TLS-intercepting proxies), for apt, pip and Python alike.
update-ca-certificates >/dev/null

# systemd generates a fresh machine-id per container at first boot.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id

# The simulated GPU driver is bind-mounted at /opt/nvml-sim by the node's creator; the loader
# finds its libnvidia-ml.so.1 through ld.so.conf once ldconfig has run at boot.
mkdir -p /opt/nvml-sim
echo /opt/nvml-sim/lib >/etc/ld.so.conf.d/00-nvml-sim.conf
ln -sf /opt/nvml-sim/bin/nvml-sim /usr/local/bin/nvml-sim
mkdir -p /usr/local/share/nvml-sim
ln -sfn /opt/nvml-sim/profiles /usr/local/share/nvml-sim/profiles
cat >/etc/systemd/system/nvml-sim-ldconfig.service <<UNIT
[Unit]
Description=Make the simulated NVIDIA driver library loadable and its state fresh
DefaultDependencies=no
ConditionPathExists=/opt/nvml-sim/lib
After=local-fs.target
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/sbin/ldconfig
# The driver's state of a fresh boot, as a loaded driver has it: an empty kernel log, the 12 V
# rail's reading for the BMC.
ExecStart=/usr/local/bin/nvml-sim reset
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
UNIT
systemctl enable nvml-sim-ldconfig.service >/dev/null 2>&1

# The simulated BMC (tests/bmc_sim, mounted at /opt/bmc-sim with its password at /etc/bmc-sim by
# the node's creator): IPMI over LAN on UDP 623, sensor values shared with the simulated driver.
cat >/etc/systemd/system/bmc-sim.service <<UNIT
[Unit]
Description=Simulated BMC (ipmi_sim)
ConditionPathExists=/opt/bmc-sim/bmc-sim
ConditionPathExists=/etc/bmc-sim/password

[Service]
ExecStart=/usr/bin/python3 /opt/bmc-sim/bmc-sim --state-dir /run/nvml-sim run --address 0.0.0.0 --port 623 --user admin --password-file /etc/bmc-sim/password
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable bmc-sim.service >/dev/null 2>&1

# The simulated InfiniBand HCAs (tests/ib_sim, mounted at /opt/ib-sim by the node's creator) of a
# node made with an IB profile (its name in /etc/ib-sim/profile, also mounted): /run/ib-sim holds
# sys/class/infiniband and the HCAs' PCI devices as the kernel shows them, LIDs and GUIDs of this
# node. (A container cannot add a class to its /sys: the roles read the tree where it is.)
mkdir -p /opt/ib-sim /usr/local/share/ib-sim
ln -sf /opt/ib-sim/ib-sim /usr/local/bin/ib-sim
ln -sfn /opt/ib-sim/profiles /usr/local/share/ib-sim/profiles
cat >/etc/systemd/system/ib-sim.service <<UNIT
[Unit]
Description=Simulated InfiniBand HCAs (ib-sim)
DefaultDependencies=no
ConditionPathExists=/opt/ib-sim/ib-sim
ConditionPathExists=/etc/ib-sim/profile
After=local-fs.target
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /opt/ib-sim/ib-sim sysfs /run/ib-sim
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
UNIT
systemctl enable ib-sim.service >/dev/null 2>&1

# Units that only make sense on real hardware or consoles fail or hang in a container (openipmi's
# loads the kernel's IPMI drivers).
systemctl mask getty.target console-getty.service systemd-remount-fs.service \
    systemd-firstboot.service openipmi.service >/dev/null 2>&1

# Smaller image; apt caches are shared with the host at run time.
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
# Lists are gone: make apt-cache ages (cache_valid_time) see them as stale, not fresh.
touch -d @0 /var/lib/apt/lists
