#!/usr/bin/env bash
# After a fault is injected into a running sandbox node (make demo FAULT=...): wait for the node's
# gpu-health timer to run again (its own schedule, at most two intervals), then show that run's
# findings from the status file and the GPU metrics node_exporter serves, scraped over HTTP as a
# Prometheus server would.
set -euo pipefail
node=${1:?usage: show-health.sh NODE}
address=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")
status_time() {
    podman exec "$node" python3 -c \
        'import json; print(json.load(open("/run/gpu-health/status.json"))["time"])' 2>/dev/null || echo 0
}
interval=$(podman exec "$node" systemctl show gpu-health.timer -p TimersMonotonic --value \
    | sed -n 's/.*OnUnitActiveUSec=\([^ ;]*\).*/\1/p')
before=$(status_time)
echo "waiting for gpu-health.timer on $node (every $interval) ..."
for _ in $(seq 1 300); do
    now=$(status_time)
    if python3 -c "import sys; sys.exit(0 if float('$now') > float('$before') else 1)"; then
        break
    fi
    sleep 2
done
podman exec "$node" /usr/local/sbin/gpu-health show
echo "--- http://$address:9100/metrics (GPU health series that are not 0)"
curl -sf "http://$address:9100/metrics" \
    | grep -E '^(gpu_lost|gpu_xid_events_total|gpu_health_status|gpu_node_health_status|gpu_settings_hold|gpu_temperature_celsius|gpu_clock_event_active|gpu_nvlink_active|bmc_sensor_volts\{sensor="P_12V"\})' \
    | grep -vE '(gpu_lost|gpu_clock_event_active|gpu_health_status)\{.*\} 0$|gpu_nvlink_active\{.*\} 1$|gpu_idle' || true
