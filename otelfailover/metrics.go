package otelfailover

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/llmfailover/failover"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/llmfailover/failover/otelfailover"

// Metrics records a pool's metrics. Make one with [NewMetrics], pass
// [Metrics.Option] to failover.New, and then [Metrics.Observe] the pool
// for its gauges. One Metrics serves one pool.
type Metrics struct {
	requests, failures, skips, cooldowns, disabled metric.Int64Counter
	probes, recoveries, hedges, refusals           metric.Int64Counter
	attemptDur, opDur                              metric.Float64Histogram
	state, inFlight                                metric.Int64ObservableGauge
	served, tokens                                 metric.Int64ObservableCounter
	meter                                          metric.Meter

	mu     sync.RWMutex
	models map[string]string // member → model, from the observed pool

	// sets caches the attribute sets of the healthy path, keyed by
	// setKey: bounded by members × operations.
	sets sync.Map
}

// setKey names a cached attribute set: a member's, or a healthy call's.
type setKey struct {
	member string
	op     operation
	model  string
	call   bool
}

// set returns the cached measurement option for k, built by attrs.
func (m *Metrics) set(k setKey, attrs func() []attribute.KeyValue) metric.MeasurementOption {
	if v, ok := m.sets.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := m.sets.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(attrs()...)))
	return v.(metric.MeasurementOption)
}

// NewMetrics creates the instruments on mp's meter for [ScopeName].
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter(ScopeName)}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{"+unitOf(name)+"}"))
		errs = append(errs, err)
		return c
	}
	m.requests = counter("failover.member.requests", "Attempts started on a member.")
	m.failures = counter("failover.member.failures", "Failed attempts on a member, by reason.")
	m.skips = counter("failover.member.skips", "Members skipped by calls no member served, by cause.")
	m.cooldowns = counter("failover.member.cooldowns", "Cooldowns opened or extended on a member, by lane and reason.")
	m.disabled = counter("failover.member.disabled", "Times a member left rotation until Enable.")
	m.probes = counter("failover.member.probes", "Half-open probes of a member after its cooldown.")
	m.recoveries = counter("failover.member.recoveries", "Times a member became active again.")
	m.hedges = counter("failover.member.hedges", "Hedged attempts started on a member.")
	m.refusals = counter("failover.retry_budget.refusals", "Calls that failed fast because the retry budget was spent, by their first member.")
	var err error
	m.attemptDur, err = m.meter.Float64Histogram("failover.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one attempt on a member."))
	errs = append(errs, err)
	m.opDur, err = m.meter.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration: one call through the pool, every attempt included."),
		metric.WithExplicitBucketBoundaries(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92))
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
	case "failover.member.skips":
		return "skip"
	}
	return "event"
}

// StatusSource is what Observe reads: a *failover.Pool of any client type.
type StatusSource interface{ Status() []failover.Status }

// Observe registers the gauges of p (state, in-flight, served, tokens),
// read from p.Status at each collection, and learns its members' models
// for gen_ai.request.model. Unregister the result to stop.
func (m *Metrics) Observe(p StatusSource) (metric.Registration, error) {
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
		}
		return nil
	}, m.state, m.inFlight, m.served, m.tokens)
}

func (m *Metrics) learn(st []failover.Status) {
	models := make(map[string]string, len(st))
	for _, s := range st {
		if s.Model != "" {
			models[s.Name] = s.Model
		}
	}
	m.mu.Lock()
	m.models = models
	m.mu.Unlock()
}

func (m *Metrics) model(member string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.models[member]
}

type metricsCallKey struct{}

// metricsCall is one call's record, shared with its attempts.
type metricsCall struct {
	mu     sync.Mutex
	member string          // the last member tried
	reason failover.Reason // its failure's reason, if it failed
}

// Option returns the failover.Option that records calls, attempts and
// events through m.
func (m *Metrics) Option() failover.Option {
	return failover.Options(failover.WithHooks(failover.Hooks{Call: m.call, Attempt: m.attempt}), failover.WithObserver(m.observe))
}

func (m *Metrics) call(ctx context.Context) (context.Context, func(error)) {
	start := time.Now()
	c := &metricsCall{}
	ctx = context.WithValue(ctx, metricsCallKey{}, c)
	return ctx, func(err error) {
		c.mu.Lock()
		member, last := c.member, c.reason
		c.mu.Unlock()
		op, hasOp := operationOf(ctx)
		model := m.model(member)
		if err == nil {
			m.opDur.Record(ctx, time.Since(start).Seconds(), m.set(setKey{member: member, op: op, model: model, call: true}, func() []attribute.KeyValue {
				return callAttrs(op, hasOp, member, model)
			}))
			return
		}
		attrs := callAttrs(op, hasOp, member, model)
		attrs = append(attrs, AttrErrorType.String(errorType(err, last)))
		var fe *failover.Error
		if errors.As(err, &fe) {
			for _, a := range fe.Attempts {
				if a.Skipped {
					m.skips.Add(ctx, 1, metric.WithAttributes(AttrMember.String(a.Member), AttrCause.String(skipCause(a))))
				}
			}
		}
		m.opDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	}
}

// callAttrs are a call's attributes but error.type.
func callAttrs(op operation, hasOp bool, member, model string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6)
	if hasOp {
		attrs = append(attrs, AttrOperation.String(op.name), AttrProvider.String(op.provider))
	}
	if member != "" {
		attrs = append(attrs, AttrMember.String(member))
	}
	if model != "" {
		attrs = append(attrs, AttrRequestModel.String(model))
	}
	return attrs
}

func (m *Metrics) attempt(ctx context.Context, member string, _ int) (context.Context, func(failover.AttemptEnd)) {
	member1 := AttrMember.String(member)
	only := m.set(setKey{member: member}, func() []attribute.KeyValue { return []attribute.KeyValue{member1} })
	m.requests.Add(ctx, 1, only)
	c, _ := ctx.Value(metricsCallKey{}).(*metricsCall)
	return ctx, func(e failover.AttemptEnd) {
		if e.Lost {
			return
		}
		if c != nil {
			c.mu.Lock()
			c.member, c.reason = member, e.Reason
			c.mu.Unlock()
		}
		if e.Err == nil {
			m.attemptDur.Record(ctx, e.Duration.Seconds(), only)
			return
		}
		reason := string(e.Reason)
		if errors.Is(e.Err, failover.ErrPanicked) {
			reason = errorTypePanic
		}
		m.failures.Add(ctx, 1, metric.WithAttributes(member1, AttrReason.String(reason)))
		m.attemptDur.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(member1, AttrErrorType.String(reason)))
	}
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
