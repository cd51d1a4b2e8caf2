package failover

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmfailover/failover/internal/redact"
)

// Member is one API configuration: a client of any type plus how to use it.
type Member[C any] struct {
	Name     string // unique and non-empty; shown in errors, events and status
	Client   C      // for example *openai.Client; must not be nil
	Priority int    // lower is tried first; equal priorities form a tier
	Weight   int    // share inside a tier for Weighted; 0 means 1
	Model    string // optional model this member serves (model-level fallback)
	Group    string // optional shared account or quota bucket: quota errors cool the whole group
	Limits   Limits // optional client-side limits
	// Provider names the member's provider for telemetry, as
	// gen_ai.provider.name spells it ("openai", "groq", "anthropic", …).
	// Optional: OpenAIMember, and New for Upstream members, fill it in
	// from the base URL when [ProviderOf] knows its host.
	Provider string

	cred *redact.Learned // the credentials its client sends (OpenAIMember), for redaction
}

// Limits are client-side limits of a member. 0 means unlimited (or, for
// ContextTokens, undeclared). A call that would exceed one skips the member
// with no upstream call.
type Limits struct {
	RPM         int `json:"rpm,omitempty"`           // requests started in any minute
	TPM         int `json:"tpm,omitempty"`           // tokens (see Tokens) of the calls started in any minute
	MaxInFlight int `json:"max_in_flight,omitempty"` // concurrent calls
	// ContextTokens is the largest call (see Tokens) the member takes. A
	// larger call skips it, and a context_length error moves on only to
	// members that declare a larger context.
	ContextTokens int `json:"context_tokens,omitempty"`
	// RPD and TPD limit the requests and tokens (see Tokens) of the calls
	// started in a day: a calendar day in DayZone, from one midnight to
	// the next (23 or 25 hours when the clocks change), not a sliding 24
	// hours. A member whose day is spent is skipped until the next
	// midnight.
	RPD int `json:"rpd,omitempty"`
	TPD int `json:"tpd,omitempty"`
	// DayZone is the IANA time zone of the day of RPD and TPD, such as
	// "America/Los_Angeles" (where Gemini's free tier resets); "" is UTC.
	// [New] rejects a zone it cannot load: on a machine without zoneinfo,
	// import time/tzdata.
	DayZone string `json:"day_zone,omitempty"`
}

// loadZone returns the location of a DayZone name. A limiter loads its
// zone once, when New or Update makes it.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}

// DayEnd returns when the day of RPD and TPD that holds now ends: the
// next midnight in DayZone after now. A DayZone that [New] rejects counts
// as UTC. Stores use it to count every replica's calls in the same day; it
// loads the zone on each call, so a store keeps the answer until the day
// ends (redisstore does).
func (l Limits) DayEnd(now time.Time) time.Time {
	loc, err := loadZone(l.DayZone)
	if err != nil {
		loc = time.UTC
	}
	return dayEnd(now, loc)
}

// dayEnd returns the first midnight in loc after now. Where a change of
// the clocks skips midnight (Santiago, Havana), the day ends when the
// clocks jump into the new day.
func dayEnd(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	end := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	if _, _, ed := end.In(loc).Date(); ed == d { // time.Date went back into the old day
		if _, jump := end.ZoneBounds(); jump.After(now) {
			end = jump
		}
	}
	if !end.After(now) {
		end = now.Add(time.Hour) // no zone ends a day this way; never a day that is over
	}
	return end
}

// Pool runs calls against its members with failover. Create it with [New];
// all methods are safe for concurrent use.
type Pool[C any] struct {
	set    settings
	budget *budget  // nil without WithRetryBudget
	sh     *sharing // nil without WithStore
	cfg    atomic.Pointer[config[C]]
	update sync.Mutex                    // serializes Update
	arena  arena                         // the members' call counters; guarded by update
	sticky atomic.Pointer[stickTo[C]]    // set after a failover when WithStickiness is on
	wake   atomic.Pointer[chan struct{}] // closed when a member may have become available
}

// config is an immutable snapshot of the members; Update swaps it.
type config[C any] struct {
	members []entry[C]
	tiers   []*tier
	groups  map[string][]*memberState
	byName  map[string]int
	sec     *secretSet // the members' credentials, redacted from all text
	through bool       // a member passes the caller's model through (no Model of its own)
}

type entry[C any] struct {
	Member[C]
	st *memberState
}

// tier is the members of one priority, in the order given.
type tier struct {
	idx    []int
	weight []uint64 // Weight, 0 replaced by 1 (and counted up to maxWeight)
	prob   []uint64 // the alias table of the weights, for a draw in O(1): keep
	alias  []int32  // position k with probability prob[k]/2^64, else alias[k]
	rr     atomic.Uint32
	seq    atomic.Uint64 // the draws on a virtual clock (WithClock)
}

// maxWeight bounds a weight as a share, so that a tier's sum cannot
// overflow: no one gives a member four billion times another's share.
const maxWeight = 1 << 32

type stickTo[C any] struct {
	cfg   *config[C]
	idx   int
	until time.Time
}

// New returns a pool of members. It checks every member and option and
// returns an error wrapping [ErrInvalid] that names each problem: no members,
// an empty or duplicate name, a negative weight or limit, a nil client, an
// invalid option value.
func New[C any](members []Member[C], opts ...Option) (*Pool[C], error) {
	set, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	p := &Pool[C]{set: set, budget: newBudget(set.budget), sh: newSharing(set.store), arena: newArena()}
	c, err := p.build(members, nil)
	if err != nil {
		return nil, err
	}
	p.cfg.Store(c)
	ch := make(chan struct{})
	p.wake.Store(&ch)
	if h := p.set.hooks.Pool; h != nil {
		h(p.Status) // before Watch: a hook that panics leaves no watcher behind
	}
	if p.sh != nil {
		p.sh.store.Watch(p.receive)
	}
	return p, nil
}

// Update replaces the members (a hot reload). A member whose Name stays keeps
// its state: cooldown, counters and disable. Removed members disappear; new
// ones start Active. Invalid input changes nothing and returns the same
// errors as [New].
func (p *Pool[C]) Update(members []Member[C]) error {
	if p == nil {
		return ErrNilPool
	}
	p.update.Lock()
	defer p.update.Unlock()
	c, err := p.build(members, p.cfg.Load())
	if err != nil {
		return err
	}
	p.cfg.Store(c)
	p.notify()
	return nil
}

func (p *Pool[C]) build(members []Member[C], old *config[C]) (*config[C], error) {
	if err := validateMembers(members); err != nil {
		return nil, err
	}
	c := &config[C]{
		members: make([]entry[C], len(members)),
		groups:  make(map[string][]*memberState),
		byName:  make(map[string]int, len(members)),
		sec:     newSecretSet(members),
	}
	for i, m := range members {
		var st *memberState
		sameLimits := false
		if old != nil {
			if j, ok := old.byName[m.Name]; ok {
				st, sameLimits = old.members[j].st, old.members[j].Limits == m.Limits
			}
		}
		if st == nil {
			st = &memberState{name: m.Name, sh: p.sh}
			st.calls.init(&p.arena)
			st.use.served.init(&p.arena)
			for k := range st.skips {
				st.skips[k].init(&p.arena)
			}
		}
		if !sameLimits { // same limits keep their history
			lim := newLimiter(m.Limits, m.Name, p.sh)
			lim.carryDay(st.lim.Load()) // and other limits keep the day's counts
			st.lim.Store(lim)
		}
		if m.Provider == "" {
			m.Provider = providerOf(m.Client)
		}
		if m.Model != "" && st.lacking.Load() != nil {
			st.mu.Lock()
			st.lacking.Store(nil) // it serves its own model now: what the caller's lacked no longer applies
			st.mu.Unlock()
		}
		c.members[i] = entry[C]{Member: m, st: st}
		c.through = c.through || m.Model == ""
		c.byName[m.Name] = i
		if m.Group != "" {
			c.groups[m.Group] = append(c.groups[m.Group], st)
		}
	}
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return members[a].Priority - members[b].Priority })
	for k, i := range order {
		if k == 0 || members[i].Priority != members[order[k-1]].Priority {
			c.tiers = append(c.tiers, &tier{})
		}
		t := c.tiers[len(c.tiers)-1]
		t.idx = append(t.idx, i)
		t.weight = append(t.weight, min(uint64(max(members[i].Weight, 1)), maxWeight))
	}
	if p.set.strategy == Weighted {
		for _, t := range c.tiers {
			t.prob, t.alias = aliasTable(t.weight)
		}
	}
	return c, nil
}

func validateMembers[C any](members []Member[C]) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: no members", ErrInvalid)
	}
	var errs []error
	seen := make(map[string]int, len(members))
	for i, m := range members {
		where := fmt.Sprintf("member %d (%q)", i, m.Name)
		if m.Name == "" {
			where = fmt.Sprintf("member %d", i)
			errs = append(errs, fmt.Errorf("%s: Name is empty", where))
		} else if j, dup := seen[m.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: Name duplicates member %d", where, j))
		} else {
			seen[m.Name] = i
		}
		if isNil(any(m.Client)) {
			errs = append(errs, fmt.Errorf("%s: Client is nil", where))
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"Weight", m.Weight}, {"Limits.RPM", m.Limits.RPM}, {"Limits.TPM", m.Limits.TPM}, {"Limits.MaxInFlight", m.Limits.MaxInFlight}, {"Limits.ContextTokens", m.Limits.ContextTokens}, {"Limits.RPD", m.Limits.RPD}, {"Limits.TPD", m.Limits.TPD}} {
			if f.v < 0 {
				errs = append(errs, fmt.Errorf("%s: %s %d is negative", where, f.name, f.v))
			}
		}
		if _, err := loadZone(m.Limits.DayZone); err != nil {
			errs = append(errs, fmt.Errorf("%s: Limits.DayZone %q is not a time zone (an IANA name such as \"America/Los_Angeles\"; import time/tzdata where the machine has no zoneinfo): %w", where, m.Limits.DayZone, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface, reflect.UnsafePointer:
		return rv.IsNil()
	}
	return false
}

// selection is one pass of choosing a member: it reads the time at most
// once, and only when a member needs it (the healthy path never does), and
// carries the call's estimated tokens.
type selection struct {
	ctx        context.Context  // of the call; nil means Background
	clock      func() time.Time // nil means time.Now
	t          time.Time
	set        bool
	tokens     int
	minContext int                                                   // after a context_length error: the context a member must declare
	counted    bitset                                                // the members whose skip the call counted: once each
	cur        int                                                   // the member being looked at, for counted
	skip       func(ctx context.Context, member string, cause error) // Hooks.Skip, if any
	model      string                                                // ForModel: the call's model, for members without their own
	proc       uint32                                                // here()+1 once read (see shard); 0 before
}

func (c *selection) now() time.Time {
	if !c.set {
		if c.clock != nil {
			c.t = c.clock()
		} else {
			c.t = time.Now()
		}
		c.set = true
	}
	return c.t
}

// pick claims the next member to try: the sticky member while stickiness
// lasts, else the first member of the first tier that can serve, ordered by
// the strategy. It returns false when no untried member can serve now.
func (p *Pool[C]) pick(c *config[C], tried *bitset, clk *selection) (int, grant, bool) {
	if s := p.sticky.Load(); s != nil {
		if s.cfg != c || !clk.now().Before(s.until) {
			p.sticky.CompareAndSwap(s, nil)
		} else if !tried.has(s.idx) {
			clk.cur = s.idx
			if g, ok := c.members[s.idx].st.acquire(clk); ok {
				return s.idx, g, true
			}
		}
	}
	for _, t := range c.tiers {
		if i, g, ok := p.pickInTier(c, t, tried, clk); ok {
			return i, g, true
		}
	}
	return 0, grant{}, false
}

func (p *Pool[C]) pickInTier(c *config[C], t *tier, tried *bitset, clk *selection) (int, grant, bool) {
	n := len(t.idx)
	switch p.set.strategy {
	case Weighted, LeastInFlight:
		// A lost race for a probe slot makes the member unready, so this
		// ends within n rounds.
		for range n {
			k := p.choose(c, t, tried, clk)
			if k < 0 {
				return 0, grant{}, false
			}
			clk.cur = t.idx[k]
			if g, ok := c.members[t.idx[k]].st.acquire(clk); ok {
				return t.idx[k], g, true
			}
		}
		return 0, grant{}, false
	}
	start := 0
	if p.set.strategy == RoundRobin && n > 1 {
		start = int((t.rr.Add(1) - 1) % uint32(n))
	}
	for k := range n {
		i := t.idx[(start+k)%n]
		if tried.has(i) {
			continue
		}
		clk.cur = i
		if g, ok := c.members[i].st.acquire(clk); ok {
			return i, g, true
		}
	}
	return 0, grant{}, false
}

// Selection in a tier by Weighted and LeastInFlight costs the same at any
// size: it draws members at random and checks only those. Up to
// drawTries draws may find no untried member ready to serve; then a scan
// of the tier decides, with the same distribution.
const (
	drawTries = 8
	// exactTier is the largest tier in which LeastInFlight compares every
	// member; a larger one compares two drawn at random.
	exactTier = 8
)

// choose returns the position in t of the member that Weighted or
// LeastInFlight picks among the untried members ready to serve, or -1.
func (p *Pool[C]) choose(c *config[C], t *tier, tried *bitset, clk *selection) int {
	usable := func(k int) bool {
		i := t.idx[k]
		return !tried.has(i) && c.members[i].st.ready(clk)
	}
	// drawn is usable for a member the selection looks at by name (a
	// draw, or LeastInFlight's comparison), counting the skip of one that
	// cannot serve (once a call); the scans after missed draws count none.
	drawn := func(k int) bool {
		i := t.idx[k]
		if tried.has(i) {
			return false
		}
		st := c.members[i].st
		clk.cur = i
		if why := st.unready(clk); why != skipNone {
			st.pass(clk, why)
			return false
		}
		return true
	}
	if p.set.strategy == LeastInFlight {
		if len(t.idx) > exactTier {
			// The power of two choices: of two ready members drawn at
			// random, the one with fewer calls in flight (the earlier on
			// a tie). A busy member loses to almost any other.
			a, b := -1, -1
			for range drawTries {
				k := int(p.below(t, uint64(len(t.idx))))
				if k == a || !drawn(k) {
					continue
				}
				if a < 0 {
					a = k
					continue
				}
				b = k
				break
			}
			switch {
			case b >= 0:
				na, nb := c.members[t.idx[a]].st.calls.inFlight(), c.members[t.idx[b]].st.calls.inFlight()
				if nb < na || (nb == na && b < a) {
					return b
				}
				return a
			case a >= 0:
				return a
			}
		}
		best, least := -1, int64(0)
		for k, i := range t.idx {
			if !drawn(k) {
				continue
			}
			st := c.members[i].st
			if n := st.calls.inFlight(); best < 0 || n < least {
				best, least = k, n
			}
		}
		return best
	}
	// Weighted: a draw in proportion to the weights, redrawn while it
	// falls on a member that cannot serve (so the shares among those that
	// can stay in proportion), from the tier's alias table; after
	// drawTries misses, a scan in proportion.
	n := uint64(len(t.idx))
	for range drawTries {
		k, frac := bits.Mul64(p.random(t), n)
		if frac >= t.prob[k] {
			k = uint64(t.alias[k])
		}
		if drawn(int(k)) {
			return int(k)
		}
	}
	// The scan: the same draw among the members that can serve.
	var sum uint64
	for k := range t.idx {
		if usable(k) {
			sum += t.weight[k]
		}
	}
	if sum == 0 {
		return -1
	}
	x, last := p.below(t, sum), -1
	for k := range t.idx {
		if !usable(k) {
			continue
		}
		if x < t.weight[k] {
			return k
		}
		x, last = x-t.weight[k], k
	}
	return last // members stopped serving while it looked
}

// below returns a random number in [0, n).
func (p *Pool[C]) below(t *tier, n uint64) uint64 {
	hi, _ := bits.Mul64(p.random(t), n)
	return hi
}

// random returns 64 random bits: from the runtime's per-thread generator,
// which no other core waits for, or on a virtual clock from a fixed
// sequence of the tier (SplitMix64), so that a simulation replays.
func (p *Pool[C]) random(t *tier) uint64 {
	if p.set.now == nil {
		return rand.Uint64()
	}
	x := t.seq.Add(1) * 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// aliasTable builds Vose's alias table of weights, in integers: position k
// is drawn with probability weight[k]/sum, to within 2^-64. A weight is at
// most maxWeight, so weight×n fits 64 bits for any tier of fewer than 2^31
// members.
func aliasTable(weight []uint64) (prob []uint64, alias []int32) {
	n := uint64(len(weight))
	var sum uint64
	for _, w := range weight {
		sum += w
	}
	prob, alias = make([]uint64, n), make([]int32, n)
	scaled := make([]uint64, n) // weight×n: the mean is sum
	var small, large []int32
	for k, w := range weight {
		scaled[k] = w * n
		if scaled[k] < sum {
			small = append(small, int32(k))
		} else {
			large = append(large, int32(k))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		prob[s], _ = bits.Div64(scaled[s], 0, sum) // scaled[s]/sum × 2^64 < 2^64
		alias[s] = l
		scaled[l] -= sum - scaled[s] // l gives s the rest of its column
		if scaled[l] < sum {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, k := range append(small, large...) { // exactly full columns (or rounding)
		prob[k], alias[k] = math.MaxUint64, k
	}
	return prob, alias
}

// stick makes the member at idx the sticky one after it took over a call.
func (p *Pool[C]) stick(c *config[C], idx int, now time.Time) {
	if p.set.stickiness > 0 {
		p.sticky.Store(&stickTo[C]{cfg: c, idx: idx, until: now.Add(p.set.stickiness)})
	}
}

// notify wakes calls waiting for a member to recover.
func (p *Pool[C]) notify() {
	ch := make(chan struct{})
	if old := p.wake.Swap(&ch); old != nil {
		close(*old)
	}
}

// member returns the member called name.
func (p *Pool[C]) member(name string) (*config[C], *entry[C], error) {
	if p == nil {
		return nil, nil, ErrNilPool
	}
	c := p.cfg.Load()
	if i, ok := c.byName[name]; ok {
		return c, &c.members[i], nil
	}
	return nil, nil, fmt.Errorf("%w: %q", ErrUnknownMember, name)
}

// Enable puts the member called name back into rotation now: it clears its
// cooldown, backoff level and any disable.
func (p *Pool[C]) Enable(name string) error {
	_, m, err := p.member(name)
	if err != nil {
		return err
	}
	p.apply(context.Background(), m.st, m.st.setEnabled(true), Event{Member: name})
	return nil
}

// Disable takes the member called name out of rotation until Enable.
// Calls already in flight on it finish normally.
func (p *Pool[C]) Disable(name string) error {
	_, m, err := p.member(name)
	if err != nil {
		return err
	}
	p.apply(context.Background(), m.st, m.st.setEnabled(false), Event{Member: name})
	return nil
}

// Report records an outcome seen outside Do, such as a stream that broke
// after its first chunk: err nil is a success, otherwise err is classified
// as in Do and may cool the member. An outcome of a call that started before
// the member's current window only extends that window, as in Do. Report of
// an unknown name is ignored.
func (p *Pool[C]) Report(name string, err error) {
	c, m, e := p.member(name)
	if e != nil {
		return
	}
	st := m.st
	g := grant{epoch: staleEpoch}
	if st.phase.Load() == phaseActive {
		g.epoch = st.epoch.Load()
	}
	now := p.now()
	if err == nil {
		st.calls.enter() // succeed counts the outcome out
		p.apply(context.Background(), st, st.succeed(g, &selection{t: now, set: true}), Event{Member: name})
		return
	}
	v := p.classify(err, now) // before enter: a panicking classifier leaks nothing
	st.calls.enter()          // failed counts the outcome out
	p.failed(context.Background(), c, m.Group, st, g, err, v, now, 0)
}

// rest cools the member called name until until without a failure (a
// proactive cooldown); unknown names are ignored.
func (p *Pool[C]) rest(name string, until, now time.Time) {
	if _, m, err := p.member(name); err == nil {
		p.apply(context.Background(), m.st, m.st.rest(until, now), Event{Member: name, Reason: ReasonRateLimit})
	}
}

// now reads the pool's clock.
func (p *Pool[C]) now() time.Time {
	if p.set.now != nil {
		return p.set.now()
	}
	return time.Now()
}

// draw returns the jitter draw for a new window of st: random, or on a
// virtual clock a fixed sequence per member (SplitMix64 over its name and
// window count).
func (p *Pool[C]) draw(st *memberState) float64 {
	if p.set.now == nil {
		return rand.Float64()
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(st.name))
	x := h.Sum64() + st.epoch.Load()*0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
