#!/usr/bin/env bash
# Runs the reliability soak N times in a row while every CPU is kept busy, as
# on a CI machine shared with other work:
#
#   ./scripts/soak-under-load.sh [N]          # N defaults to 20
#
# The load is stress-ng --cpu (one worker per CPU) when stress-ng is
# installed (Debian: apt-get install stress-ng), else one shell busy loop per
# CPU. The test binary is built once, with -race as ./scripts/test.sh runs it.
# Every run is kept as a log in a temporary directory; the script prints one
# line per run and exits 1 if any failed.
#
# Knobs:
#   POPBRIDGE_SOAK_TESTS='^TestSoak$'   which tests of ./reliability to run
#   POPBRIDGE_SOAK_RACE=0               build without -race
#   POPBRIDGE_SOAK_LOAD=0               no CPU load (a baseline)
#   POPBRIDGE_SOAK=5m                   the long soak (see reliability/soak_test.go)
#   CI=true                             a missing Dovecot fails instead of skipping
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin" # Dovecot lives in /usr/sbin

runs="${1:-20}"
tests="${POPBRIDGE_SOAK_TESTS:-^TestSoak\$}"
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 [RUNS]  (a positive number, default 20)" >&2
	exit 2
fi

logs="$(mktemp -d -t popbridge-soak.XXXXXX)"
load_pids=()
stop_load() {
	local pid
	for pid in "${load_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	load_pids=()
}
trap stop_load EXIT
trap 'stop_load; exit 130' INT TERM

race=(-race)
[[ "${POPBRIDGE_SOAK_RACE:-}" == 0 ]] && race=()
echo "building the reliability tests ${race[*]}"
go test "${race[@]}" -c -o "$logs/reliability.test" ./reliability

cpus="$(nproc 2>/dev/null || echo 2)"
if [[ "${POPBRIDGE_SOAK_LOAD:-}" == 0 ]]; then
	echo "load: none (POPBRIDGE_SOAK_LOAD=0)"
elif command -v stress-ng >/dev/null 2>&1; then
	stress-ng --cpu "$cpus" --quiet &
	load_pids+=("$!")
	echo "load: stress-ng --cpu $cpus (pid ${load_pids[*]})"
else
	for ((i = 0; i < cpus; i++)); do
		(while :; do :; done) &
		load_pids+=("$!")
	done
	echo "load: $cpus busy loops (no stress-ng)"
fi

failed=0
for ((i = 1; i <= runs; i++)); do
	log="$logs/run-$i.log"
	start=$SECONDS
	# The package directory is the working directory, as under go test.
	if (cd reliability && CI="${CI:-}" "$logs/reliability.test" -test.count=1 -test.timeout=15m \
		-test.run "$tests" -test.v >"$log" 2>&1); then
		result=ok
	else
		result=FAIL
		failed=$((failed + 1))
	fi
	audit="$(grep -m1 -o 'audit: lost.*' "$log" || true)"
	printf 'run %2d/%d %-4s %3ds  %s\n' "$i" "$runs" "$result" $((SECONDS - start)) "$audit"
done
stop_load

echo "$((runs - failed)) of $runs runs passed; logs in $logs"
((failed == 0))
