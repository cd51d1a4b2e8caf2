package filestore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/filestore"
)

// childEnv names the file of the second process of TestTwoProcesses: the
// test binary, run again with it set, plays the child.
const childEnv = "FILESTORE_TEST_CHILD"

// The two processes' burst: each makes burstSaves concurrent saves of its
// own members, burstSaves saves in order of a member both save, and
// burstTakes concurrent Takes on a member with an RPM limit that both
// share, at one instant of a virtual clock.
const (
	burstSaves = 200
	burstTakes = 100
	sharedRPM  = 150
)

// t0 is the virtual instant of the burst's Takes and windows.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// arrivals records when a store's watcher first heard of each member, and
// how long after the saving process's Save (its At, on the wall clock
// that both processes share).
type arrivals struct {
	mu   sync.Mutex
	lag  map[string]time.Duration
	last map[string]failover.Shared
}

func newArrivals() *arrivals {
	return &arrivals{lag: map[string]time.Duration{}, last: map[string]failover.Shared{}}
}

func (a *arrivals) add(sh failover.Shared) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.lag[sh.Member]; !ok {
		a.lag[sh.Member] = now.Sub(sh.At)
	}
	if sh.Version > a.last[sh.Member].Version {
		a.last[sh.Member] = sh
	}
}

// wait waits up to d for the members that match, and returns their
// largest lag.
func (a *arrivals) wait(t testing.TB, d time.Duration, what string, members ...string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		a.mu.Lock()
		var worst time.Duration
		missing := 0
		for _, m := range members {
			lag, ok := a.lag[m]
			if !ok {
				missing++
			}
			worst = max(worst, lag)
		}
		a.mu.Unlock()
		if missing == 0 {
			return worst
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d %s never arrived", d, missing, len(members), what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (a *arrivals) state(member string) failover.Shared {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[member]
}

// names returns prefix/0 … prefix/n-1.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/%d", prefix, i)
	}
	return out
}

// burst runs one process's part: the concurrent saves of its members, the
// ordered saves of "both" (windows ending at t0 + 2i + offset seconds, so
// that the child's last is the longest of all), and the concurrent Takes.
// It returns how many Takes fit.
func burst(t testing.TB, s *filestore.Store, prefix string, offset int) int {
	var wg sync.WaitGroup
	for _, m := range names(prefix, burstSaves) {
		wg.Go(func() {
			s.Save(failover.Shared{Member: m, State: failover.Disabled, Manual: true, At: time.Now(), Origin: prefix, Seq: 1})
		})
	}
	wg.Go(func() {
		for i := range burstSaves {
			s.Save(failover.Shared{Member: "both", State: failover.CoolingDown, Lane: failover.LaneTransient, Reason: failover.ReasonServer,
				Level: 1, Until: t0.Add(time.Duration(2*i+offset) * time.Second), At: time.Now(), Origin: prefix, Seq: uint64(i + 1)})
		}
	})
	var mu sync.Mutex
	took := 0
	for range burstTakes {
		wg.Go(func() {
			ok, _, err := s.Take(context.Background(), "shared", failover.Limits{RPM: sharedRPM}, 0, t0)
			if err != nil {
				t.Errorf("Take: %v", err)
			}
			if ok {
				mu.Lock()
				took++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return took
}

// TestTwoProcesses runs a second process (this test binary again) on the
// same file. Each sees the other's first change within a second; then
// both make 200 concurrent saves, 200 ordered saves of one member and
// 100 Takes of one 150 RPM window at the same time. Every change reaches
// the other process, the cooldown of the member both saved is the longest
// of either's, exactly 150 Takes fit across the two processes, and the
// file is a valid store afterwards.
func TestTwoProcesses(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		child(t, path)
		return
	}
	if testing.Short() {
		t.Skip("starts a second process")
	}
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := newArrivals()
	s.Watch(seen.add)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTwoProcesses$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	results := make(chan map[string]string, 1)
	var output strings.Builder
	go func() {
		r := map[string]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			output.WriteString(line + "\n")
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "RESULT "), "="); ok && strings.HasPrefix(line, "RESULT ") {
				r[k] = v
			}
		}
		results <- r
	}()

	// The child's first change, then ours; the child measures its lag.
	lag := seen.wait(t, 30*time.Second, "child's first change", "child/hello") // the child starts meanwhile
	t.Logf("the child's first change reached this process in %v", lag)
	if lag > time.Second {
		t.Errorf("the child's first change took %v to reach this process, want ≤ 1 s", lag)
	}
	start := time.Now().Add(300 * time.Millisecond) // the burst, in both processes
	s.Save(failover.Shared{Member: "parent/hello", State: failover.CoolingDown, Lane: failover.LaneTransient, Reason: failover.ReasonServer,
		Level: 1, Until: start, At: time.Now(), Origin: "parent", Seq: 1})
	time.Sleep(time.Until(start))
	took := burst(t, s, "parent", 0)
	saved := time.Now()
	burstLag := seen.wait(t, 10*time.Second, "child's burst saves", names("child", burstSaves)...)
	t.Logf("the child's %d saves reached this process at most %v after each Save (this process's burst ended %v before the last arrived)",
		burstSaves, burstLag, time.Since(saved))

	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child failed: %v\n%s", err, output.String())
	}
	r := <-results
	t.Logf("child: %v", r)
	var childTook int
	var childLag, childBurstLag time.Duration
	if _, err := fmt.Sscan(r["took"], &childTook); err != nil {
		t.Fatalf("no result from the child: %v\n%s", err, output.String())
	}
	childLag, _ = time.ParseDuration(r["hello_lag"])
	childBurstLag, _ = time.ParseDuration(r["burst_lag"])
	if childLag > time.Second {
		t.Errorf("this process's first change took %v to reach the child, want ≤ 1 s", childLag)
	}
	t.Logf("Takes of one %d RPM window: %d here, %d in the child", sharedRPM, took, childTook)
	if took+childTook != sharedRPM {
		t.Errorf("%d + %d Takes fit a %d RPM window across two processes, want exactly %d", took, childTook, sharedRPM, sharedRPM)
	}
	if lag := max(burstLag, childBurstLag); lag > 2*time.Second {
		t.Errorf("a burst save took %v to reach the other process", lag)
	}
	// The longest cooldown of "both" won: the child's last.
	want := t0.Add(time.Duration(2*(burstSaves-1)+1) * time.Second)
	arrived := func() bool { return seen.state("both").Until.Equal(want) }
	deadline := time.Now().Add(5 * time.Second)
	for !arrived() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := seen.state("both"); !got.Until.Equal(want) {
		t.Errorf("both ends at %v, want the longest window, %v", got.Until, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The file is valid and holds everything.
	again, err := filestore.Open(path)
	if err != nil {
		t.Fatalf("the file after the burst: %v", err)
	}
	defer again.Close()
	all := map[string]failover.Shared{}
	again.Watch(func(sh failover.Shared) { all[sh.Member] = sh })
	for _, m := range append(names("parent", burstSaves), names("child", burstSaves)...) {
		if all[m].State != failover.Disabled || !all[m].Manual {
			t.Fatalf("%s in the file: %+v, want a Disable", m, all[m])
		}
	}
	if got := all["both"]; !got.Until.Equal(want) {
		t.Errorf("both in the file ends at %v, want %v", got.Until, want)
	}
	if ok, at, err := again.Take(context.Background(), "shared", failover.Limits{RPM: sharedRPM}, 0, t0); err != nil || ok || !at.Equal(t0.Add(time.Minute)) {
		t.Errorf("a Take after the burst: %v, %v, %v; want the window full until %v", ok, at, err, t0.Add(time.Minute))
	}
	t.Logf("locking: %s; %d members in the file", filestore.LockKind, len(all))
}

// child is the second process of TestTwoProcesses.
func child(t *testing.T, path string) {
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := newArrivals()
	s.Watch(seen.add)
	s.Save(failover.Shared{Member: "child/hello", State: failover.Disabled, Manual: true, At: time.Now(), Origin: "child", Seq: 1})
	lag := seen.wait(t, 30*time.Second, "parent's first change", "parent/hello")
	fmt.Printf("RESULT hello_lag=%v\n", lag)
	time.Sleep(time.Until(seen.state("parent/hello").Until)) // the start of the burst
	took := burst(t, s, "child", 1)
	burstLag := seen.wait(t, 10*time.Second, "parent's burst saves", names("parent", burstSaves)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT took=%d\n", took)
	fmt.Printf("RESULT burst_lag=%v\n", burstLag)
}
