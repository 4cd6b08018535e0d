#!/usr/bin/env bash
# The first command on a fresh machine: installs what is missing, builds the release binary and serves.
#   scripts/serve.sh [serve flags...]        default: --model-repository examples/models
# The compiler's output goes to .build/serve-build.log; the terminal shows one progress line. The first release build
# takes about 14 minutes on 2 cores (816 s measured on a fresh clone); later ones take seconds to a few minutes.
# SERVAL_BUILD_CONFIGURATION=debug builds and serves the debug binary instead (faster to build, much slower to run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
configuration=${SERVAL_BUILD_CONFIGURATION:-release}
log=.build/serve-build.log
mkdir -p .build
echo "building serval ($configuration; the first release build takes about 14 minutes on 2 cores); compiler output in $log"
swift build -c "$configuration" --product serval >"$log" 2>&1 &
build=$!
while kill -0 "$build" 2>/dev/null; do
  if [ -t 1 ]; then
    step=$(grep -o '^\[[0-9]*/[0-9]*\]' "$log" | tail -1 || true)
    printf '\r  %-40s' "${step:-resolving packages...}"
  fi
  sleep 2
done
if ! wait "$build"; then
  [ -t 1 ] && echo
  echo "the build failed; the last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
[ -t 1 ] && printf '\r  %-40s\n' "built."
# The bundled examples unless the caller names a repository; any other flags go to serval serve as well.
case " $* " in
  *" --model-repository"*) ;;
  *) set -- --model-repository examples/models "$@" ;;
esac
exec ".build/$configuration/serval" serve "$@"
