package sim_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover/internal/sim"
)

// TestSimAudit replays the scenarios and checks our targets against
// the baselines. Run with -v to see the table.
func TestSimAudit(t *testing.T) {
	audit := sim.Audit()
	if testing.Verbose() {
		sim.Print(os.Stdout, audit)
	}
	byPolicy := func(rs []sim.Result, name string) sim.Result {
		for _, r := range rs {
			if r.Policy == name {
				return r
			}
		}
		t.Fatalf("no policy %q", name)
		return sim.Result{}
	}
	const ours = "failover (defaults)"

	// 1. Rate-limited keys: success ≥ 99.9 % with amplification ≤ 1.05.
	r := byPolicy(audit[0], ours)
	if r.SuccessRate() < 0.999 || r.Amplification() > 1.05 {
		t.Errorf("scenario 1: success %.4f, amplification %.3f", r.SuccessRate(), r.Amplification())
	}
	if l := byPolicy(audit[0], "failover + Limits.RPM 60"); l.Wasted != 0 || l.SuccessRate() < 0.999 {
		t.Errorf("scenario 1 with limits: %d failed upstream calls, success %.4f", l.Wasted, l.SuccessRate())
	}

	// 2. Revoked primary: at most one call to it per permanent window
	// (15 min doubling to 6 h, jitter ±20 %).
	r = byPolicy(audit[1], ours)
	windows, at := 0, time.Duration(0)
	for level := 0; at < 24*time.Hour; level++ {
		w := min(15*time.Minute<<level, 6*time.Hour)
		at += w * 8 / 10 // the shortest the jitter can make it
		windows++
	}
	if r.PerMember[0] > windows+1 {
		t.Errorf("scenario 2: %d calls to the revoked key, at most %d windows", r.PerMember[0], windows)
	}
	calls := r.UpstreamTimes[0]
	for i := 1; i < len(calls); i++ {
		if gap := calls[i] - calls[i-1]; gap < 12*time.Minute {
			t.Errorf("scenario 2: revoked key called twice within %v", gap)
		}
	}

	// 3. Outage: the first success at most 2 s after it ends (a call that
	// finds every member cooling probes one early), at most 1.05 upstream
	// calls per call made, over the run and during the outage.
	r = byPolicy(audit[2], ours)
	if r.Recovery < 0 || r.Recovery > 2*time.Second {
		t.Errorf("scenario 3: recovery %v", r.Recovery)
	}
	if a := float64(r.OutageUpstream) / float64(r.OutageCalls); a > 1.05 || r.PerCall() > 1.05 {
		t.Errorf("scenario 3: %.3f upstream calls per call during the outage, %.3f over the run", a, r.PerCall())
	}

	// 4. Flapping primary: fewer wasted calls than every baseline.
	r = byPolicy(audit[3], ours)
	for _, b := range audit[3] {
		if !strings.HasPrefix(b.Policy, "failover") && b.Wasted <= r.Wasted {
			t.Errorf("scenario 4: %s wasted %d, ours %d", b.Policy, b.Wasted, r.Wasted)
		}
	}
	if r.SuccessRate() < 1 {
		t.Errorf("scenario 4: success %.4f", r.SuccessRate())
	}

	// 5. Blips of a free primary: the paid fallback serves at most 2 % of
	// the calls (a fixed 5 s cooldown hands it a third).
	r = byPolicy(audit[4], ours)
	if share := r.FallbackShare(); share > 0.02 || r.SuccessRate() < 1 {
		t.Errorf("scenario 5: fallback share %.3f, success %.4f", share, r.SuccessRate())
	}

	// 6. Pool of one: only the 500 itself fails; the next call, 100 ms
	// later, is served.
	r = byPolicy(audit[5], ours)
	if r.Successes != r.Calls-1 {
		t.Errorf("scenario 6: %d of %d served", r.Successes, r.Calls)
	}

	// 8. Restarts: five runs of a process with a revoked key cost it one
	// call with filestore, five without a store.
	r = byPolicy(audit[7], "failover + filestore")
	if r.PerMember[0] != 1 || r.SuccessRate() < 1 {
		t.Errorf("scenario 8: %d calls to the revoked key in five runs with filestore", r.PerMember[0])
	}
	if r := byPolicy(audit[7], "failover (no store)"); r.PerMember[0] != 5 {
		t.Errorf("scenario 8: %d calls to the revoked key in five runs without a store", r.PerMember[0])
	}

	// 7. Dead primary: at most 20 calls to it in 10 minutes at 10 calls/s.
	r = byPolicy(audit[6], ours)
	if r.PerMember[0] > 20 || r.SuccessRate() < 1 {
		t.Errorf("scenario 7: %d calls to the dead primary, success %.4f", r.PerMember[0], r.SuccessRate())
	}
}

// The audit is deterministic: two runs give the same numbers.
func TestSimDeterministic(t *testing.T) {
	a, b := sim.Audit(), sim.Audit()
	for i := range a {
		for j := range a[i] {
			if a[i][j].Upstream != b[i][j].Upstream || a[i][j].Successes != b[i][j].Successes {
				t.Fatalf("%s / %s differs between runs", a[i][j].Scenario, a[i][j].Policy)
			}
		}
	}
}

// The README shows the audit as the simulator prints it.
func TestSimREADME(t *testing.T) {
	var b bytes.Buffer
	sim.Print(&b, sim.Audit())
	want := "```" + b.String() + "```\n"
	const file, begin, end = "../../README.md", "<!-- dryrun -->", "<!-- /dryrun -->"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %s … %s", begin, end)
	}
	if os.Getenv("FAILOVER_UPDATE") == "1" {
		if err := os.WriteFile(file, []byte(s[:i+len(begin)+1]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := s[i+len(begin)+1 : j]; got != want {
		t.Errorf("README.md's dry-run table is stale: run FAILOVER_UPDATE=1 go test ./internal/sim -run TestSimREADME\n%s", want)
	}
}
