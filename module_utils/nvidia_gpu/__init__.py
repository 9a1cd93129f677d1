"""The one implementation of GPU access for this project, on top of NVML (pynvml).

Used by the Ansible modules in library/, by the boot-time tool that re-applies GPU settings
(roles/gpu_tuning) and by the tests. Standard library and pynvml only, Python 3.8+, so the same
files run inside AnsiballZ and as a plain package on a node.
"""
