#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module documentation: node_packages, carried out by action_plugins/node_packages.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_packages
short_description: Debian packages present, apt run only for the ones dpkg does not list
description:
  - Reads the node's installed packages once per play run (one C(dpkg-query), kept as the host
    fact C(node_packages_dpkg_listing)) and runs M(ansible.builtin.apt) only for the specs that
    listing does not satisfy, after refreshing apt's package lists when they are older than
    O(cache_valid_time_s). A call that finds everything installed makes no call on the node.
  - The listing is read again after an install. Later calls do not see packages that other
    tasks installed during the run; they take them as missing, and apt then has nothing to do.
  - Carried out on the controller by the action plugin of the same name, which runs
    C(dpkg-query) through M(ansible.builtin.command) and installs through M(ansible.builtin.apt).
    The project's C(ansible.cfg) puts C(action_plugins/) on Ansible's path; a configuration
    without it runs this file alone, which returns nothing.
    Specs are checked before anything runs; a bad one fails naming it and what is allowed.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  names:
    description:
      - Package specs as apt takes them, C(name), C(name:arch), C(name=version) or
        C(name=version*) (a version prefix). May be empty (nothing to do).
    type: list
    elements: str
    required: true
  install_recommends:
    description: Whether apt also installs the packages' recommendations.
    type: bool
    default: true
  cache_valid_time_s:
    description:
      - Age in seconds above which apt's package lists are refreshed before an install, also in
        check mode (only apt's cache is written, and check mode needs current lists to tell what
        would be installed). C(0) refreshes them before any install.
    type: int
    default: 3600
attributes:
  check_mode:
    description: Reports the specs that would be installed, from current package lists.
    support: full
  diff_mode:
    description: What apt would install, as M(ansible.builtin.apt) shows it.
    support: full
seealso:
  - module: ansible.builtin.apt
"""

EXAMPLES = r"""
- name: Install ipmitool where it is missing
  node_packages:
    names: [ipmitool]

- name: The CUDA toolkit of one version, without recommendations
  node_packages:
    names: [nvidia-cuda-toolkit=11.8*]
    install_recommends: false
"""

RETURN = r"""
missing:
  description: The specs the listing did not satisfy (installed now; in check mode, to install).
  returned: always
  type: list
  elements: str
  sample: [ipmitool]
ansible_facts:
  description: The listing, when this call read it.
  returned: when read
  type: dict
  contains:
    node_packages_dpkg_listing:
      description: C(dpkg-query) lines, C(<selection><state><error> <name> <version>).
      type: list
      elements: str
      sample: ["ii  bash 5.2.15-2+b7"]
"""
