#!/usr/bin/env bash
# Runs the benchmarks of failover and its peers (gobreaker v2, failsafe-go)
# side by side and prints one table of medians with the ratios that matter.
# Usage: scripts/bench.sh [count]   (default 5 runs of each benchmark)
set -euo pipefail
cd "$(dirname "$0")/../benchmarks"
count="${1:-5}"
procs="${GOMAXPROCS:-$(getconf _NPROCESSORS_ONLN)}"
raw=$(go test -run '^$' -bench . -benchmem -count "$count" .)
echo "$raw" | grep -E '^(goos|goarch|cpu):' || true
echo "go: $(go env GOVERSION), runs per benchmark: $count (medians)"
echo
echo "$raw" | awk -v procs="$procs" '
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
  n[name]++; ns[name, n[name]] = $3; b[name] = $5; a[name] = $7
  if (!(name in seen)) { seen[name] = 1; order[++k] = name }
}
function median(name,   i, j, t, m, v) {
  m = n[name]
  for (i = 1; i <= m; i++) v[i] = ns[name, i] + 0
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
END {
  printf "%-32s %12s %8s %10s\n", "benchmark", "ns/op", "B/op", "allocs/op"
  for (i = 1; i <= k; i++) { med[order[i]] = median(order[i]); printf "%-32s %12.1f %8s %10s\n", order[i], med[order[i]], b[order[i]], a[order[i]] }
  d = med["Direct"]
  print ""
  printf "%-58s %8s %8s\n", "ratio", "value", "target"
  printf "%-58s %8.2f %8s\n", "healthy overhead, failover / gobreaker (each minus direct)", (med["Failover/members=4"] - d) / (med["Gobreaker"] - d), "<= 0.60"
  printf "%-58s %8.2f %8s\n", "healthy overhead, failover / failsafe-go retry+breaker", (med["Failover/members=4"] - d) / (med["Failsafe"] - d), ""
  printf "%-58s %8.2f %8s\n", "1,024 members / 4 members", med["Failover/members=1024"] / med["Failover/members=4"], "<= 1.50"
  printf "%-58s %8.2f %8s\n", "CPU per call, parallel / serial (failover; ns/op x " procs ")", procs * med["FailoverParallel/members=4"] / med["Failover/members=4"], "<= 1.30"
  printf "%-58s %8.2f %8s\n", "CPU per call, parallel / serial (gobreaker)", procs * med["GobreakerParallel"] / med["Gobreaker"], ""
  printf "%-58s %8s %8s\n", "allocations per healthy call (failover)", a["Failover/members=4"], "0"
}'

# The scaling ratios of the core (bench_test.go's TestBenchRatios): healthy
# RunParallel against serial CPU per call, and Weighted and LeastInFlight
# against Ordered in a tier of 1,024 members; it fails when one misses.
echo
(cd .. && FAILOVER_BENCH_RATIOS=1 FAILOVER_BENCH_ROUNDS="$count" go test -count 1 -run '^TestBenchRatios$' -v . | grep -E 'bench_test|^(ok|FAIL|---)') || true

# The Redis store (redisstore/, its own module; its benchmarks start a
# redis-server from PATH): the healthy path with each store, a call on a
# member with RPM limits, and how fast a change reaches another replica.
echo
cd ../redisstore
raw=$(go test -run '^$' -bench . -benchmem -count "$count" .)
echo "$raw" | awk '
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
  n[name]++; ns[name, n[name]] = $3; a[name] = $(NF-1)
  for (i = 4; i < NF; i++) { if ($(i+1) == "p50-ms") p50[name, n[name]] = $i; if ($(i+1) == "p99-ms") p99[name, n[name]] = $i }
  if (!(name in seen)) { seen[name] = 1; order[++k] = name }
}
function median(arr, name,   i, j, t, m, v) {
  m = n[name]
  for (i = 1; i <= m; i++) v[i] = arr[name, i] + 0
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
END {
  printf "%-32s %12s %10s\n", "benchmark", "ns/op", "allocs/op"
  for (i = 1; i <= k; i++) { med[order[i]] = median(ns, order[i]); printf "%-32s %12.1f %10s\n", order[i], med[order[i]], a[order[i]] }
  print ""
  printf "%-58s %8s %8s\n", "ratio", "value", "target"
  printf "%-58s %8.2f %8s\n", "healthy path, Redis store / in-memory store", med["HealthyPath/store=redis"] / med["HealthyPath/store=memory"], "<= 1.20"
  printf "%-58s %8.2f %8s\n", "healthy path, Redis store / no store", med["HealthyPath/store=redis"] / med["HealthyPath/store=local"], ""
  printf "%-58s %8.2f %8s\n", "propagation p50, ms", median(p50, "Propagation"), ""
  printf "%-58s %8.2f %8s\n", "propagation p99, ms", median(p99, "Propagation"), "<= 50"
}'
