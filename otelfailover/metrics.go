package otelfailover

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/llmfailover/failover"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/llmfailover/failover/otelfailover"

// Metrics records a pool's metrics. Make one with [NewMetrics] and pass
// [Metrics.Option] to failover.New: it records the counters and
// histograms and observes the pool's gauges. One Metrics serves one pool.
type Metrics struct {
	requests, failures, cooldowns, disabled metric.Int64Counter
	probes, recoveries, hedges, refusals    metric.Int64Counter
	attemptDur, opDur                       metric.Float64Histogram
	tokenUsage                              metric.Int64Histogram
	state, inFlight                         metric.Int64ObservableGauge
	served, tokens, skips                   metric.Int64ObservableCounter
	meter                                   metric.Meter

	// members caches each member's attribute sets, copied on write: a
	// healthy call reads it without a lock and builds no set. Bounded by
	// the members, the operations and maxResponseModels.
	members atomic.Pointer[map[string]*memberSets]
	mu      sync.Mutex // serialises writers of members

	regMu sync.Mutex
	reg   metric.Registration // of the gauges, for the pool observed
	err   error               // of the registration the option made
	bound bool                // the option observed a pool
}

// memberSets are a member's cached attribute sets.
// The options are kept as the slices Add and Record take, so that a
// measurement allocates none.
type memberSets struct {
	add      []metric.AddOption    // failover.member
	record   []metric.RecordOption // failover.member
	model    string                // its Model, gen_ai.request.model
	provider string                // its Provider, gen_ai.provider.name
	served   atomic.Pointer[map[callKey][]metric.RecordOption]
	// responses are the response models seen, up to maxResponseModels;
	// guarded by Metrics.mu.
	responses map[string]bool
}

// callKey names the attribute set of a call a member served.
type callKey struct {
	op       operation
	response string // gen_ai.response.model
}

// maxResponseModels bounds the gen_ai.response.model values kept per
// member (a provider names them); later ones record as "_OTHER", as the
// GenAI conventions spell a value outside a known set.
const maxResponseModels = 8

// durationBuckets are the bucket bounds, in seconds, of the duration
// histograms: those the GenAI conventions advise for
// gen_ai.client.operation.duration.
func durationBuckets() []float64 {
	return []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
}

// NewMetrics creates the instruments on mp's meter for [ScopeName].
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter(ScopeName)}
	m.members.Store(&map[string]*memberSets{})
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{"+unitOf(name)+"}"))
		errs = append(errs, err)
		return c
	}
	m.requests = counter("failover.member.requests", "Attempts started on a member.")
	m.failures = counter("failover.member.failures", "Failed attempts on a member, by reason.")
	m.cooldowns = counter("failover.member.cooldowns", "Cooldowns opened or extended on a member, by lane and reason.")
	m.disabled = counter("failover.member.disabled", "Times a member left rotation until Enable.")
	m.probes = counter("failover.member.probes", "Half-open probes of a member after its cooldown.")
	m.recoveries = counter("failover.member.recoveries", "Times a member became active again.")
	m.hedges = counter("failover.member.hedges", "Hedged attempts started on a member.")
	m.refusals = counter("failover.retry_budget.refusals", "Calls that failed fast because the retry budget was spent, by their first member.")
	var err error
	m.attemptDur, err = m.meter.Float64Histogram("failover.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one attempt on a member."),
		metric.WithExplicitBucketBoundaries(durationBuckets()...))
	errs = append(errs, err)
	m.opDur, err = m.meter.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration: one call through the pool, every attempt included."),
		metric.WithExplicitBucketBoundaries(durationBuckets()...))
	errs = append(errs, err)
	m.tokenUsage, err = m.meter.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("GenAI token usage: the tokens of one response, as its provider reported them, by gen_ai.token.type."),
		metric.WithExplicitBucketBoundaries(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864))
	errs = append(errs, err)
	m.skips, err = m.meter.Int64ObservableCounter("failover.member.skips", metric.WithUnit("{call}"),
		metric.WithDescription("Calls that passed a member over, by cause: cooling, probing, disabled, limited, model."))
	errs = append(errs, err)
	m.state, err = m.meter.Int64ObservableGauge("failover.member.state",
		metric.WithDescription("1 for a member's current state, 0 for the others."))
	errs = append(errs, err)
	m.inFlight, err = m.meter.Int64ObservableGauge("failover.member.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Attempts running on a member."))
	errs = append(errs, err)
	m.served, err = m.meter.Int64ObservableCounter("failover.member.served", metric.WithUnit("{request}"),
		metric.WithDescription("Calls a member answered."))
	errs = append(errs, err)
	m.tokens, err = m.meter.Int64ObservableCounter("failover.member.tokens", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens of a member's responses as the provider reported them, by gen_ai.token.type."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func unitOf(name string) string {
	switch name {
	case "failover.member.requests", "failover.member.probes", "failover.member.hedges":
		return "attempt"
	case "failover.retry_budget.refusals":
		return "call"
	}
	return "event"
}

// StatusSource is what Observe reads: a *failover.Pool of any client type.
type StatusSource interface{ Status() []failover.Status }

// Observe registers the gauges and counters read from p.Status at each
// collection (state, in-flight, served, tokens, skips) and learns its
// members' models and providers. [Metrics.Option] observes the pool it is
// given to by itself: call Observe only for a StatusSource made another
// way. It replaces the source observed before; Unregister the result to
// stop.
func (m *Metrics) Observe(p StatusSource) (metric.Registration, error) {
	m.regMu.Lock()
	defer m.regMu.Unlock()
	if m.reg != nil {
		_ = m.reg.Unregister()
		m.reg = nil
	}
	reg, err := m.observe1(p)
	if err == nil {
		m.reg = reg
	}
	return reg, err
}

// Err returns the error of registering the gauges of the pool the option
// was given to, if that failed (the meter refused the callback).
func (m *Metrics) Err() error {
	m.regMu.Lock()
	defer m.regMu.Unlock()
	return m.err
}

// statusFunc is a pool's Status as a StatusSource.
type statusFunc func() []failover.Status

func (f statusFunc) Status() []failover.Status { return f() }

// errTwoPools is Err's answer when the option was given to a second pool.
var errTwoPools = errors.New("otelfailover: one Metrics serves one pool: the option was given to a second one, whose gauges are not observed")

// bind observes the pool New made with the option; a second pool's is
// refused (Err says so): one Metrics serves one pool.
func (m *Metrics) bind(status func() []failover.Status) {
	m.regMu.Lock()
	if m.bound {
		m.err = errTwoPools
		m.regMu.Unlock()
		return
	}
	m.bound = true
	m.regMu.Unlock()
	_, err := m.Observe(statusFunc(status))
	m.regMu.Lock()
	if err != nil {
		m.err = err // a second pool's refusal, set meanwhile, stays otherwise
	}
	m.regMu.Unlock()
}

func (m *Metrics) observe1(p StatusSource) (metric.Registration, error) {
	m.learn(p.Status())
	states := []failover.State{failover.Active, failover.CoolingDown, failover.Probing, failover.Disabled}
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := p.Status()
		m.learn(st)
		for _, s := range st {
			member := AttrMember.String(s.Name)
			for _, state := range states {
				v := int64(0)
				if s.State == state {
					v = 1
				}
				o.ObserveInt64(m.state, v, metric.WithAttributes(member, AttrState.String(state.String())))
			}
			o.ObserveInt64(m.inFlight, int64(s.InFlight), metric.WithAttributes(member))
			o.ObserveInt64(m.served, int64(s.Served), metric.WithAttributes(member))
			o.ObserveInt64(m.tokens, int64(s.PromptTokens), metric.WithAttributes(member, AttrTokenType.String("input")))
			o.ObserveInt64(m.tokens, int64(s.CompletionTokens), metric.WithAttributes(member, AttrTokenType.String("output")))
			for cause, n := range map[string]uint64{"cooling": s.Skipped.Cooling, "probing": s.Skipped.Probing, "disabled": s.Skipped.Disabled, "limited": s.Limited, "model": s.Skipped.Model} {
				o.ObserveInt64(m.skips, int64(n), metric.WithAttributes(member, AttrCause.String(cause)))
			}
		}
		return nil
	}, m.state, m.inFlight, m.served, m.tokens, m.skips)
}

// learn caches the sets of the members of st, with their models; a member
// whose model changed starts afresh.
func (m *Metrics) learn(st []failover.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.members.Load()
	next := make(map[string]*memberSets, len(st))
	for _, s := range st {
		if ms := (*old)[s.Name]; ms != nil && ms.model == s.Model && ms.provider == s.Provider {
			next[s.Name] = ms
			continue
		}
		next[s.Name] = newMemberSets(s.Name, s.Model, s.Provider)
	}
	m.members.Store(&next)
}

func newMemberSets(name, model, provider string) *memberSets {
	only := metric.WithAttributeSet(attribute.NewSet(AttrMember.String(name)))
	ms := &memberSets{add: []metric.AddOption{only}, record: []metric.RecordOption{only}, model: model, provider: provider}
	ms.served.Store(&map[callKey][]metric.RecordOption{})
	return ms
}

// member returns the cached sets of the member called name, making them
// for a member Observe has not seen (then without a model).
func (m *Metrics) member(name string) *memberSets {
	if ms := (*m.members.Load())[name]; ms != nil {
		return ms
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.members.Load()
	if ms := old[name]; ms != nil {
		return ms
	}
	next := make(map[string]*memberSets, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	ms := newMemberSets(name, "", "")
	next[name] = ms
	m.members.Store(&next)
	return ms
}

// servedSet returns the set of a call the member served for op, with the
// response's model.
func (m *Metrics) servedSet(ms *memberSets, member string, op operation, hasOp bool, response string) []metric.RecordOption {
	k := callKey{op, response}
	if v, ok := (*ms.served.Load())[k]; ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *ms.served.Load()
	if v, ok := old[k]; ok {
		return v
	}
	v := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(callAttrs(op, hasOp, member, ms, response)...))}
	next := make(map[callKey][]metric.RecordOption, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = v
	ms.served.Store(&next)
	return v
}

// callCtx is a call's context and its record, shared with its attempts
// (one allocation for both).
type callCtx struct {
	context.Context
	m        *Metrics
	start    time.Time
	attempt  func(failover.AttemptEnd) // the end of each of its attempts
	mu       sync.Mutex
	member   string          // the last member tried
	reason   failover.Reason // its failure's reason, if it failed
	response string          // the model a response named, if known by the call's end
	answered string          // the member whose response named it
}

type metricsCallKey struct{}

func (c *callCtx) Value(key any) any {
	if key == (metricsCallKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// Option returns the failover.Option that records calls, attempts, usage
// and events through m, and observes the gauges of the pool New makes
// with it (see [Metrics.Observe]).
func (m *Metrics) Option() failover.Option {
	return failover.Options(failover.WithHooks(failover.Hooks{Call: m.call, Attempt: m.attempt, Usage: m.usage, Pool: m.bind}), failover.WithObserver(m.observe))
}

func (m *Metrics) call(ctx context.Context) (context.Context, func(error)) {
	c := &callCtx{Context: ctx, m: m, start: time.Now()}
	c.attempt = c.attemptEnd
	return c, c.end
}

// end records the call's duration.
func (c *callCtx) end(err error) {
	d := time.Since(c.start).Seconds()
	m := c.m
	c.mu.Lock()
	member, last, response := c.member, c.reason, c.response
	if c.answered != member {
		response = "" // a hedge's loser named it
	}
	c.mu.Unlock()
	op, hasOp := operationOf(c.Context)
	if err == nil && member != "" {
		ms := m.member(member)
		m.opDur.Record(c.Context, d, m.servedSet(ms, member, op, hasOp, response)...)
		return
	}
	var ms *memberSets
	if member != "" {
		ms = m.member(member)
	}
	attrs := append(callAttrs(op, hasOp, member, ms, ""), AttrErrorType.String(errorType(err, last)))
	m.opDur.Record(c.Context, d, metric.WithAttributes(attrs...))
}

// callAttrs are a call's attributes but error.type: the operation, the
// member (ms, nil when none was tried) with its model and provider (or
// else the provider WithOperation named), the response's model.
func callAttrs(op operation, hasOp bool, member string, ms *memberSets, response string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	if hasOp && op.name != "" {
		attrs = append(attrs, AttrOperation.String(op.name))
	}
	provider := op.provider
	if ms != nil && ms.provider != "" {
		provider = ms.provider
	}
	if provider != "" {
		attrs = append(attrs, AttrProvider.String(provider))
	}
	if member != "" {
		attrs = append(attrs, AttrMember.String(member))
	}
	if ms != nil && ms.model != "" {
		attrs = append(attrs, AttrRequestModel.String(ms.model))
	}
	if response != "" {
		attrs = append(attrs, AttrResponseModel.String(response))
	}
	return attrs
}

func (m *Metrics) attempt(ctx context.Context, member string, _ int) (context.Context, func(failover.AttemptEnd)) {
	ms := m.member(member)
	m.requests.Add(ctx, 1, ms.add...)
	if c, ok := ctx.Value(metricsCallKey{}).(*callCtx); ok && c.m == m {
		return ctx, c.attempt
	}
	return ctx, func(e failover.AttemptEnd) { m.attemptDone(ctx, ms, e) }
}

// attemptEnd ends an attempt of the call.
func (c *callCtx) attemptEnd(e failover.AttemptEnd) {
	if e.Lost {
		return
	}
	c.mu.Lock()
	c.member, c.reason = e.Member, e.Reason
	c.mu.Unlock()
	c.m.attemptDone(c, c.m.member(e.Member), e)
}

// attemptDone records an attempt's duration and failure.
func (m *Metrics) attemptDone(ctx context.Context, ms *memberSets, e failover.AttemptEnd) {
	if e.Lost {
		return
	}
	if e.Err == nil {
		m.attemptDur.Record(ctx, e.Duration.Seconds(), ms.record...)
		return
	}
	reason := string(e.Reason)
	if errors.Is(e.Err, failover.ErrPanicked) {
		reason = errorTypePanic
	}
	member := AttrMember.String(e.Member)
	m.failures.Add(ctx, 1, metric.WithAttributes(member, AttrReason.String(reason)))
	m.attemptDur.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(member, AttrErrorType.String(reason)))
}

// usage records a response's tokens, and names its model on the call
// when the call has not ended.
func (m *Metrics) usage(ctx context.Context, u failover.Usage) {
	ms := m.member(u.Member)
	response := m.responseModel(ms, u.Model)
	if c, ok := ctx.Value(metricsCallKey{}).(*callCtx); ok && c.m == m {
		c.mu.Lock()
		c.response, c.answered = response, u.Member
		c.mu.Unlock()
	}
	op, hasOp := operationOf(ctx)
	attrs := callAttrs(op, hasOp, u.Member, ms, response)
	m.tokenUsage.Record(ctx, int64(u.PromptTokens), metric.WithAttributes(append(attrs, AttrTokenType.String("input"))...))
	m.tokenUsage.Record(ctx, int64(u.CompletionTokens), metric.WithAttributes(append(attrs, AttrTokenType.String("output"))...))
}

// responseModel returns model as a gen_ai.response.model value: itself
// for the first maxResponseModels a member names, "_OTHER" after.
func (m *Metrics) responseModel(ms *memberSets, model string) string {
	if model == "" {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ms.responses == nil {
		ms.responses = map[string]bool{}
	}
	if ms.responses[model] {
		return model
	}
	if len(ms.responses) >= maxResponseModels {
		return otherValue
	}
	ms.responses[model] = true
	return model
}

func (m *Metrics) observe(ev failover.Event) {
	ctx := context.Background()
	member := AttrMember.String(ev.Member)
	switch ev.Kind {
	case failover.EventCooldown:
		m.cooldowns.Add(ctx, 1, metric.WithAttributes(member, AttrLane.String(ev.Reason.Lane().String()), AttrReason.String(string(ev.Reason))))
	case failover.EventDisabled:
		m.disabled.Add(ctx, 1, metric.WithAttributes(member, AttrReason.String(string(ev.Reason))))
	case failover.EventProbe:
		m.probes.Add(ctx, 1, metric.WithAttributes(member))
	case failover.EventRecovered:
		m.recoveries.Add(ctx, 1, metric.WithAttributes(member))
	case failover.EventHedge:
		m.hedges.Add(ctx, 1, metric.WithAttributes(member))
	case failover.EventExhausted:
		if errors.Is(ev.Err, failover.ErrRetryBudget) {
			m.refusals.Add(ctx, 1, metric.WithAttributes(member))
		}
	}
}
