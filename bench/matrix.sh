#!/usr/bin/env bash
# Every scenario of BENCHMARKS.md, one after the other, each output kept under bench/results/matrix-<time>/.
#   bash bench/matrix.sh [quick]     (quick: smaller sizes, to check the harness)
# Exit status: the number of runs that failed a check (each run's own exit status is in its log).
set -u
cd "$(dirname "$0")/.."
out="bench/results/matrix-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
failed=0
run() {
	local name="$1"; shift
	echo "== $name: npm run bench -- $* (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if npm run --silent bench -- "$@" >"$out/$name.log" 2>"$out/$name.err"; then echo "   ok"; else echo "   FAILED CHECKS (exit $?)"; failed=$((failed + 1)); fi
	grep -E "^(enter|status read|status poll|hold|pay|confirmed|reference|confirm|MariaDB)|ratio|soldOutSeconds|peak RSS|FAIL" "$out/$name.log" | sed 's/^/   /' | cut -c1-220
}
if [ "${1:-}" = "quick" ]; then
	run queue-cluster queue --users 1000 --seconds 3
	run hold-cluster hold --users 200
	run checkout-cluster checkout --users 200 --concurrency 16
	run flashsale-cluster flashsale --users 1000 --seats 100
	exit $failed
fi
run baseline baseline
for rt in compiled ts-node; do
	run "queue-cluster-$rt" queue --runtime "$rt"
	run "hold-cluster-$rt" hold --runtime "$rt"
	run "hold16-cluster-$rt" hold --runtime "$rt" --concurrency 16
	run "checkout-cluster-$rt" checkout --runtime "$rt" --baseline "$([ "$rt" = compiled ] && echo true || echo false)"
	run "flashsale-cluster-$rt" flashsale --runtime "$rt"
done
run queue-embedded queue --target embedded --runtime compiled
run hold-embedded hold --target embedded --runtime compiled
run checkout-embedded checkout --target embedded --runtime compiled
run flashsale-embedded flashsale --target embedded --runtime compiled
run flashsale-cluster-repeat flashsale --runtime compiled --repeat 3
run flashsale-embedded-repeat flashsale --target embedded --runtime compiled --repeat 3
echo "logs: $out"
exit $failed
