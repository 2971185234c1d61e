#!/usr/bin/env bash
# Each namespace's warden.yaml is what `wardenctl render istio` makes of its policy.yaml today:
# the command is the one the policy's header names (the comment lines after "Rendered into
# warden.yaml by:", up to the first line that is not a comment), run again and compared byte for
# byte. The command must render that directory's policy.yaml for the directory's namespace.
# usage: check-rendered.sh WARDENCTL NAMESPACE_DIR...
set -euo pipefail
wardenctl=$1; shift
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
for dir in "$@"; do
  policy=$dir/policy.yaml
  namespace=$(basename "$dir")
  command=$(sed -n '/Rendered into warden.yaml by:/,/^[^#]/p' "$policy" | sed -n '2,$s/^#  *//p' | sed 's/\\$//' | tr '\n' ' ')
  read -r -a words <<< "$command"
  if [[ ${words[0]:-} != wardenctl || ${words[1]:-} != render || ${words[2]:-} != istio || ${words[3]:-} != "$policy" ]]; then
    echo "$policy: its header must name 'wardenctl render istio $policy --namespace $namespace ...' (found: $command)"; exit 1
  fi
  if [[ " $command " != *" --namespace $namespace "* ]]; then
    echo "$policy: the command must render for --namespace $namespace (found: $command)"; exit 1
  fi
  "$wardenctl" "${words[@]:1}" > "$rendered"
  if ! diff -u "$dir/warden.yaml" "$rendered"; then
    echo "$dir/warden.yaml is not what '$command' renders now: run it and commit the result"; exit 1
  fi
  echo "$dir/warden.yaml: as '${command% }' renders it"
done
