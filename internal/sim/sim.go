// Package sim replays failure scenarios on virtual time against the real
// failover.Pool and against simple baselines, to audit rotation without
// real providers. Everything is deterministic: the clock is virtual and
// every random draw comes from a fixed seed.
package sim

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/filestore"
	"github.com/sashabaranov/go-openai"
)

// Epoch is where virtual time starts.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Provider answers one upstream call to member i at virtual time now; nil
// is a success. It also returns the call's latency.
type Provider func(i int, now time.Time) (time.Duration, error)

// Scenario is a workload against a set of members.
type Scenario struct {
	Name     string
	Members  int
	Calls    int           // calls, one every Interval
	Interval time.Duration // between calls
	// OutageEnd, if set, is when an outage ends: recovery is measured from it.
	OutageStart, OutageEnd time.Duration
	// Start is when the first call is made, after the epoch.
	Start time.Duration
	// New returns a fresh provider (with its own state and seed).
	New func() Provider
}

// Policy routes calls. Call makes one call at now through try, which
// performs an upstream call to member i and reports its error.
type Policy interface {
	Name() string
	Call(now time.Time, try func(i int) error) error
}

// Result is what one policy did in one scenario.
type Result struct {
	Scenario, Policy string
	Calls, Successes int
	Upstream         int   // upstream calls
	Wasted           int   // upstream calls that failed
	PerMember        []int // upstream calls per member
	FailedPerMember  []int
	OutageUpstream   int           // upstream calls during the outage
	OutageCalls      int           // calls during the outage
	Recovery         time.Duration // first success after the outage ends, -1 if none
	AddedP50         time.Duration // latency added by failover (failed attempts before the answer)
	AddedP99         time.Duration
	FailedCallTimes  [][]time.Duration // per member, when failed upstream calls happened (from start)
	UpstreamTimes    [][]time.Duration // per member, when upstream calls happened (from start)
}

// SuccessRate is successes per call.
func (r Result) SuccessRate() float64 { return float64(r.Successes) / float64(r.Calls) }

// PerCall is upstream calls per call made.
func (r Result) PerCall() float64 { return float64(r.Upstream) / float64(r.Calls) }

// FallbackShare is the share of the calls that members other than the
// first (the primary) served.
func (r Result) FallbackShare() float64 {
	served := 0
	for i := 1; i < len(r.PerMember); i++ {
		served += r.PerMember[i] - r.FailedPerMember[i]
	}
	return float64(served) / float64(r.Calls)
}

// Amplification is upstream calls per successful call.
func (r Result) Amplification() float64 {
	if r.Successes == 0 {
		return math.Inf(1)
	}
	return float64(r.Upstream) / float64(r.Successes)
}

// Run replays s against p.
func Run(s Scenario, p Policy, now *time.Time) Result {
	prov := s.New()
	r := Result{Scenario: s.Name, Policy: p.Name(), Calls: s.Calls, Recovery: -1,
		PerMember: make([]int, s.Members), FailedPerMember: make([]int, s.Members),
		FailedCallTimes: make([][]time.Duration, s.Members), UpstreamTimes: make([][]time.Duration, s.Members)}
	added := make([]time.Duration, 0, s.Calls)
	for c := range s.Calls {
		*now = epoch.Add(s.Start + time.Duration(c)*s.Interval)
		at := now.Sub(epoch)
		inOutage := s.OutageEnd > 0 && at >= s.OutageStart && at < s.OutageEnd
		var lost time.Duration
		err := p.Call(*now, func(i int) error {
			lat, e := prov(i, *now)
			r.Upstream++
			r.PerMember[i]++
			r.UpstreamTimes[i] = append(r.UpstreamTimes[i], at)
			if inOutage {
				r.OutageUpstream++
			}
			if e != nil {
				r.Wasted++
				r.FailedPerMember[i]++
				r.FailedCallTimes[i] = append(r.FailedCallTimes[i], at)
				lost += lat
			}
			return e
		})
		if inOutage {
			r.OutageCalls++
		}
		if err == nil {
			r.Successes++
			added = append(added, lost)
			if s.OutageEnd > 0 && at >= s.OutageEnd && r.Recovery < 0 {
				r.Recovery = at - s.OutageEnd
			}
		}
	}
	slices.Sort(added)
	if n := len(added); n > 0 {
		r.AddedP50, r.AddedP99 = added[n/2], added[min(n-1, n*99/100)]
	}
	return r
}

// retryAfter is a 429 whose Retry-After the classifier honours.
type retryAfter struct {
	*openai.APIError
	d time.Duration
}

func (e retryAfter) Unwrap() error             { return e.APIError }
func (e retryAfter) RetryAfter() time.Duration { return e.d }

func apiErr(status int, msg string) *openai.APIError {
	return &openai.APIError{HTTPStatusCode: status, Message: msg}
}

// Scenarios returns the scenarios of the audit.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name: "rate-limited keys: 4 keys × 60 RPM, 200 calls/min, 30 min", Members: 4,
			Calls: 30 * 200, Interval: 300 * time.Millisecond,
			New: func() Provider { return rpmProvider(4, 60) },
		},
		{
			Name: "revoked primary: 401 in front of 2 healthy keys, 10,000 calls in a day", Members: 3,
			Calls: 10000, Interval: 24 * time.Hour / 10000,
			New: func() Provider {
				return func(i int, _ time.Time) (time.Duration, error) {
					if i == 0 {
						return 20 * time.Millisecond, apiErr(401, "Incorrect API key provided")
					}
					return 300 * time.Millisecond, nil
				}
			},
		},
		{
			Name: "provider outage: every key 503 for 5 min, 20 min at 200 calls/min", Members: 4,
			Calls: 20 * 200, Interval: 300 * time.Millisecond, OutageStart: 5 * time.Minute, OutageEnd: 10 * time.Minute,
			New: func() Provider {
				return func(_ int, now time.Time) (time.Duration, error) {
					if at := now.Sub(epoch); at >= 5*time.Minute && at < 10*time.Minute {
						return 50 * time.Millisecond, apiErr(503, "The engine is currently overloaded")
					}
					return 300 * time.Millisecond, nil
				}
			},
		},
		{
			Name: "flapping primary: fails half its calls for an hour, 200 calls/min", Members: 2,
			Calls: 60 * 200, Interval: 300 * time.Millisecond,
			New: func() Provider {
				rng := rand.New(rand.NewPCG(4, 4))
				return func(i int, _ time.Time) (time.Duration, error) {
					if i == 0 && rng.IntN(2) == 0 {
						return 100 * time.Millisecond, apiErr(500, "The server had an error")
					}
					return 300 * time.Millisecond, nil
				}
			},
		},
		{
			Name: "blips of a free primary: fails 1 % of its calls at random, a paid fallback, 10 calls/s", Members: 2,
			Calls: 2000, Interval: 100 * time.Millisecond,
			New: func() Provider {
				rng := rand.New(rand.NewPCG(5, 5))
				return func(i int, _ time.Time) (time.Duration, error) {
					if i == 0 && rng.IntN(100) == 0 {
						return 50 * time.Millisecond, apiErr(500, "The server had an error while processing your request")
					}
					return 50 * time.Millisecond, nil
				}
			},
		},
		{
			Name: "pool of one: a single 500 in 20 calls, one every 100 ms", Members: 1,
			Calls: 20, Interval: 100 * time.Millisecond,
			New: func() Provider {
				n := 0
				return func(_ int, _ time.Time) (time.Duration, error) {
					if n++; n == 10 {
						return 50 * time.Millisecond, apiErr(500, "The server had an error while processing your request")
					}
					return 50 * time.Millisecond, nil
				}
			},
		},
		{
			Name: "dead primary: fails every call for 10 min, a healthy fallback, 10 calls/s", Members: 2,
			Calls: 6000, Interval: 100 * time.Millisecond,
			New: func() Provider {
				return func(i int, _ time.Time) (time.Duration, error) {
					if i == 0 {
						return 50 * time.Millisecond, apiErr(500, "The server had an error while processing your request")
					}
					return 50 * time.Millisecond, nil
				}
			},
		},
	}
}

// rpmProvider enforces rpm calls per sliding minute per key, answering a
// 429 with the Retry-After that frees the window.
func rpmProvider(keys, rpm int) Provider {
	starts := make([][]time.Time, keys)
	return func(i int, now time.Time) (time.Duration, error) {
		w := starts[i]
		for len(w) > 0 && !w[0].Add(time.Minute).After(now) {
			w = w[1:]
		}
		starts[i] = w
		if len(w) >= rpm {
			wait := w[0].Add(time.Minute).Sub(now)
			secs := time.Duration(math.Ceil(wait.Seconds())) * time.Second
			return 20 * time.Millisecond, retryAfter{apiErr(429, "Rate limit reached for requests"), secs}
		}
		starts[i] = append(w, now)
		return 300 * time.Millisecond, nil
	}
}

// Ours is the real failover.Pool on the virtual clock, with default
// settings (and optionally client-side limits).
type Ours struct {
	name string
	pool *failover.Pool[int]
}

// NewOurs returns the pool over n members in priority order; rpm > 0 sets
// Limits.RPM on each; opts add options.
func NewOurs(name string, n, rpm int, now *time.Time, opts ...failover.Option) *Ours {
	ms := make([]failover.Member[int], n)
	for i := range ms {
		ms[i] = failover.Member[int]{Name: fmt.Sprintf("key%d", i), Client: i, Priority: i, Limits: failover.Limits{RPM: rpm}}
	}
	p, err := failover.New(ms, append(opts, failover.WithClock(func() time.Time { return *now }))...)
	if err != nil {
		panic(err) // the members above are valid
	}
	return &Ours{name: name, pool: p}
}

// Name is the policy's name.
func (o *Ours) Name() string { return o.name }

// Call runs one call through failover.Do.
func (o *Ours) Call(_ time.Time, try func(int) error) error {
	_, err := failover.Do(context.Background(), o.pool, func(_ context.Context, m failover.Member[int]) (struct{}, error) {
		return struct{}{}, try(m.Client)
	})
	return err
}

// NextOnError is baseline (a): members in order, the next on any error,
// no cooldown.
type NextOnError struct{ N int }

// Name is the policy's name.
func (NextOnError) Name() string { return "next on error" }

// Call tries every member in order until one succeeds.
func (b NextOnError) Call(_ time.Time, try func(int) error) error {
	var err error
	for i := range b.N {
		if err = try(i); err == nil {
			return nil
		}
	}
	return err
}

// Fixed is baseline (b): a fixed cooldown after any error, no backoff, no
// probe (every call may hit a member once its cooldown ends).
type Fixed struct {
	N        int
	Cooldown time.Duration
	until    []time.Time
}

// Name is the policy's name.
func (b *Fixed) Name() string { return "fixed 5 s cooldown" }

// Call tries members that are not cooling, in order.
func (b *Fixed) Call(now time.Time, try func(int) error) error {
	if b.until == nil {
		b.until = make([]time.Time, b.N)
	}
	err := failover.ErrUnavailable
	for i := range b.N {
		if now.Before(b.until[i]) {
			continue
		}
		if err = try(i); err == nil {
			return nil
		}
		b.until[i] = now.Add(b.Cooldown)
	}
	return err
}

// Ladder is baseline (c): 1 min → 5 min → 25 min → 1 h per consecutive
// failure, ignoring Retry-After; a success resets it.
type Ladder struct {
	N     int
	until []time.Time
	fails []int
}

var ladder = []time.Duration{time.Minute, 5 * time.Minute, 25 * time.Minute, time.Hour}

// Name is the policy's name.
func (b *Ladder) Name() string { return "1m→5m→25m→1h ladder" }

// Call tries members that are not cooling, in order.
func (b *Ladder) Call(now time.Time, try func(int) error) error {
	if b.until == nil {
		b.until, b.fails = make([]time.Time, b.N), make([]int, b.N)
	}
	err := failover.ErrUnavailable
	for i := range b.N {
		if now.Before(b.until[i]) {
			continue
		}
		if err = try(i); err == nil {
			b.fails[i] = 0
			return nil
		}
		b.until[i] = now.Add(ladder[min(b.fails[i], len(ladder)-1)])
		b.fails[i]++
	}
	return err
}

// Audit runs every scenario against ours and the baselines.
func Audit() [][]Result {
	var out [][]Result
	for _, s := range Scenarios() {
		var now time.Time
		policies := []Policy{
			NewOurs("failover (defaults)", s.Members, 0, &now),
			NextOnError{N: s.Members},
			&Fixed{N: s.Members, Cooldown: 5 * time.Second},
			&Ladder{N: s.Members},
		}
		switch {
		case strings.HasPrefix(s.Name, "rate-limited"):
			policies = slices.Insert(policies, 1, Policy(NewOurs("failover + Limits.RPM 60", s.Members, 60, &now)))
		case strings.HasPrefix(s.Name, "flapping"):
			policies = slices.Insert(policies, 1, Policy(NewOurs("failover + WithStickiness(10m)", s.Members, 0, &now, failover.WithStickiness(10*time.Minute))))
		}
		var rs []Result
		for _, p := range policies {
			rs = append(rs, Run(s, p, &now))
		}
		out = append(out, rs)
	}
	dir, err := os.MkdirTemp("", "failover-sim-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	return append(out, Restarts(dir))
}

// restartScenario is five runs of a process (a CLI, a cron job), a minute
// apart, each a new pool making 10 calls, with a revoked key in front of a
// healthy one.
var restartScenario = Scenario{
	Name: "restarts: five runs of a process a minute apart, 10 calls each, a revoked key in front", Members: 2,
	Calls: 10, Interval: time.Second,
	New: func() Provider {
		return func(i int, _ time.Time) (time.Duration, error) {
			if i == 0 {
				return 20 * time.Millisecond, apiErr(401, "Incorrect API key provided")
			}
			return 300 * time.Millisecond, nil
		}
	},
}

// Restarts replays restartScenario five times, each run with fresh
// policies: ours with a filestore on one file in dir (the state of one run
// is the next run's), ours without a store, and the baselines. Each result
// sums the five runs.
func Restarts(dir string) []Result {
	const runs = 5
	path := filepath.Join(dir, "failover.json")
	type factory struct {
		name string
		make func(now *time.Time) (Policy, func())
	}
	factories := []factory{
		{"failover + filestore", func(now *time.Time) (Policy, func()) {
			st, err := filestore.Open(path)
			if err != nil {
				panic(err) // a fresh file in a fresh directory
			}
			return NewOurs("failover + filestore", 2, 0, now, failover.WithStore(st)), func() { _ = st.Close() }
		}},
		{"failover (no store)", func(now *time.Time) (Policy, func()) { return NewOurs("failover (no store)", 2, 0, now), func() {} }},
		{"next on error", func(*time.Time) (Policy, func()) { return NextOnError{N: 2}, func() {} }},
		{"fixed 5 s cooldown", func(*time.Time) (Policy, func()) { return &Fixed{N: 2, Cooldown: 5 * time.Second}, func() {} }},
		{"1m→5m→25m→1h ladder", func(*time.Time) (Policy, func()) { return &Ladder{N: 2}, func() {} }},
	}
	var out []Result
	for _, f := range factories {
		var sum Result
		for run := range runs {
			var now time.Time
			p, done := f.make(&now)
			s := restartScenario
			s.Start = time.Duration(run) * time.Minute // a run a minute
			r := Run(s, p, &now)
			done()
			if run == 0 {
				sum = r
				sum.Scenario, sum.Policy = s.Name, f.name
				continue
			}
			sum.Calls += r.Calls
			sum.Successes += r.Successes
			sum.Upstream += r.Upstream
			sum.Wasted += r.Wasted
			for i := range sum.PerMember {
				sum.PerMember[i] += r.PerMember[i]
				sum.FailedPerMember[i] += r.FailedPerMember[i]
			}
		}
		out = append(out, sum)
	}
	return out
}

// Print writes the audit as one table per scenario.
func Print(w io.Writer, audit [][]Result) {
	for _, rs := range audit {
		fmt.Fprintf(w, "\n%s\n", rs[0].Scenario)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "policy\tsuccess\tupstream/call\tfailed upstream calls\tserved by fallbacks\trecovery\tadded p50\tadded p99\t")
		for _, r := range rs {
			rec := "-"
			if r.Recovery >= 0 {
				rec = r.Recovery.Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%.2f %%\t%.3f\t%d\t%.1f %%\t%s\t%v\t%v\t\n", r.Policy, 100*r.SuccessRate(), r.PerCall(), r.Wasted, 100*r.FallbackShare(), rec, r.AddedP50, r.AddedP99)
		}
		_ = tw.Flush()
	}
}
