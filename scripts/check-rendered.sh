#!/usr/bin/env bash
# Each namespace's warden.yaml is what `wardenctl render istio` makes of its policy.yaml today:
# the command is the one the policy's header names (the lines after "Rendered into warden.yaml
# by:"), run again and compared byte for byte.
# usage: check-rendered.sh WARDENCTL NAMESPACE_DIR...
set -euo pipefail
wardenctl=$1; shift
for dir in "$@"; do
  policy=$dir/policy.yaml
  command=$(sed -n '/Rendered into warden.yaml by:/,/^[^#]/p' "$policy" | sed -n '2,$s/^#  *//p' | sed 's/\\$//' | tr '\n' ' ')
  [[ $command == "wardenctl render istio "* ]] || { echo "$policy: no 'Rendered into warden.yaml by: wardenctl render istio ...' header"; exit 1; }
  if ! diff -u "$dir/warden.yaml" <("$wardenctl" ${command#wardenctl }) > /tmp/warden-rendered.$$; then
    cat /tmp/warden-rendered.$$; rm -f /tmp/warden-rendered.$$
    echo "$dir/warden.yaml is not what '$command' renders now: run it and commit the result"; exit 1
  fi
  rm -f /tmp/warden-rendered.$$
  echo "$dir/warden.yaml: as '$command' renders it"
done
