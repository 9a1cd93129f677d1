"""Print a pip.conf for sandbox nodes that carries this host's pip index settings.

Only settings that still mean something inside a node are kept: http(s) indexes, trusted hosts and
the timeout. The certificate points at the node's system bundle, which holds the host's CAs.
"""

import subprocess
import sys

KEPT = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout")


def host_settings() -> dict[str, str]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in KEPT:
            settings[name] = value.strip("'\"")
    return settings


def node_pip_conf(settings: dict[str, str]) -> str:
    lines = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt"]
    for name, value in sorted(settings.items()):
        if name.endswith("index-url"):
            value = " ".join(
                url for url in value.split() if url.startswith(("http://", "https://"))
            )
        if value:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(node_pip_conf(host_settings()))
