#!/usr/bin/env bash
# Runs stages given as "NAME=COMMAND" in order, stops at the first that fails, and ends with each
# stage's wall time (also after a failure): the developer guide keeps `make test` under
# 45 minutes on 2 cores. Exit status: the failed stage's, or 0.
set -uo pipefail

budget_s=$((45 * 60))
names=() times=() results=()
failed=""
status=0
for stage in "$@"; do
  name=${stage%%=*}
  names+=("$name")
  if [[ -n $failed ]]; then
    times+=("-") results+=("not run")
    continue
  fi
  start_s=$SECONDS
  bash -c "${stage#*=}"
  status=$?
  times+=($((SECONDS - start_s)))
  if ((status == 0)); then
    results+=("passed")
  else
    results+=("FAILED (exit $status)") failed=$name
  fi
done

minutes() { [[ $1 == - ]] && echo - || printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
total_s=0
printf '\n%-24s %8s  %s\n' "stage" "time" "result"
for i in "${!names[@]}"; do
  printf '%-24s %8s  %s\n' "${names[$i]}" "$(minutes "${times[$i]}")" "${results[$i]}"
  [[ ${times[$i]} == - ]] || total_s=$((total_s + times[i]))
done
summary=${failed:+"FAILED at $failed"}
((total_s > budget_s)) && summary="${summary:-passed}, over the $((budget_s / 60))-minute budget"
printf '%-24s %8s  %s\n' "total" "$(minutes $total_s)" "${summary:-passed}"
exit $status
