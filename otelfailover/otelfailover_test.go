package otelfailover_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/otelfailover"
)

// statusErr is a provider error with an HTTP status.
type statusErr struct{ code int }

func (e statusErr) Error() string   { return "request failed" }
func (e statusErr) StatusCode() int { return e.code }

// members: a revoked key (401), a rate-limited key (429), a healthy key.
func members() []failover.Member[int] {
	return []failover.Member[int]{
		{Name: "revoked", Client: 401, Model: "gpt-4o-mini"},
		{Name: "limited", Client: 429, Model: "gpt-4o-mini"},
		{Name: "healthy", Client: 0, Model: "gpt-4o"},
	}
}

// serve fails with the member's status, and with a 500 on the healthy key
// when fail is set; upstream counts calls per member.
func serve(upstream map[string]int, fail bool) func(context.Context, failover.Member[int]) (string, error) {
	return func(_ context.Context, m failover.Member[int]) (string, error) {
		upstream[m.Name]++
		switch {
		case m.Client != 0:
			return "", statusErr{m.Client}
		case fail:
			return "", statusErr{500}
		}
		return m.Name, nil
	}
}

type point struct {
	attrs map[string]string
	value float64 // a sum's value or a histogram's count
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string][]point{}
	attrs := func(s attribute.Set) map[string]string {
		m := map[string]string{}
		for _, kv := range s.ToSlice() {
			m[string(kv.Key)] = kv.Value.String()
		}
		return m
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), float64(p.Value)})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), float64(p.Value)})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), float64(p.Count)})
				}
			}
		}
	}
	return out
}

func TestMetricsScriptedRun(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	om, err := otelfailover.NewMetrics(mp)
	require.NoError(t, err)
	pool, err := failover.New(members(), om.Option())
	require.NoError(t, err)
	reg, err := om.Observe(pool)
	require.NoError(t, err)
	defer func() { _ = reg.Unregister() }()

	ctx := otelfailover.WithOperation(context.Background(), "chat", "openai")
	upstream := map[string]int{}
	for i, fail := range []bool{false, false, true} {
		out, err := failover.Do(ctx, pool, serve(upstream, fail))
		if fail {
			require.ErrorIs(t, err, failover.ErrExhausted, "call %d", i)
		} else {
			require.NoError(t, err, "call %d", i)
			assert.Equal(t, "healthy", out)
		}
	}
	assert.Equal(t, map[string]int{"revoked": 1, "limited": 1, "healthy": 3}, upstream)

	got := collect(t, reader)
	m := func(kv ...string) map[string]string {
		out := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked"), 1}, {m("failover.member", "limited"), 1}, {m("failover.member", "healthy"), 3},
	}, got["failover.member.requests"])
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked", "failover.reason", "auth"), 1},
		{m("failover.member", "limited", "failover.reason", "rate_limit"), 1},
		{m("failover.member", "healthy", "failover.reason", "server"), 1},
	}, got["failover.member.failures"])
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked", "failover.skip.cause", "cooling"), 1},
		{m("failover.member", "limited", "failover.skip.cause", "cooling"), 1},
	}, got["failover.member.skips"])
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked", "failover.lane", "permanent", "failover.reason", "auth"), 1},
		{m("failover.member", "limited", "failover.lane", "transient", "failover.reason", "rate_limit"), 1},
		{m("failover.member", "healthy", "failover.lane", "transient", "failover.reason", "server"), 1},
	}, got["failover.member.cooldowns"])
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked", "error.type", "auth"), 1},
		{m("failover.member", "limited", "error.type", "rate_limit"), 1},
		{m("failover.member", "healthy"), 2},
		{m("failover.member", "healthy", "error.type", "server"), 1},
	}, got["failover.attempt.duration"])
	genai := m("gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o", "failover.member", "healthy")
	failed := m("gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o", "failover.member", "healthy", "error.type", "server")
	assert.ElementsMatch(t, []point{{genai, 2}, {failed, 1}}, got["gen_ai.client.operation.duration"])
	assert.ElementsMatch(t, []point{
		{m("failover.member", "revoked"), 0}, {m("failover.member", "limited"), 0}, {m("failover.member", "healthy"), 2},
	}, got["failover.member.served"])
	states := map[string]string{}
	for _, p := range got["failover.member.state"] {
		if p.value == 1 {
			assert.NotContains(t, states, p.attrs["failover.member"], "one state per member")
			states[p.attrs["failover.member"]] = p.attrs["failover.state"]
		}
	}
	assert.Len(t, got["failover.member.state"], 12, "four states per member")
	want := map[string]string{}
	for _, s := range pool.Status() {
		want[s.Name] = s.State.String()
	}
	assert.Equal(t, want, states)
	assert.Equal(t, "cooling_down", states["revoked"])
	assert.Equal(t, "cooling_down", states["limited"])
	assert.Len(t, got["failover.member.in_flight"], 3)
	for _, p := range got["failover.member.in_flight"] {
		assert.Zero(t, p.value)
	}
	assert.Empty(t, got["failover.member.probes"])
}

// TestMetricsProbesRecoveriesRefusals covers the event counters: a probe
// that recovers a member, and a call the retry budget refuses.
func TestMetricsProbesRecoveriesRefusals(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	now := time.Unix(1_700_000_000, 0)
	clock := failover.WithClock(func() time.Time { return now })
	pool, err := failover.New(members()[1:], om.Option(), clock, failover.WithRetryBudget(0, 0))
	require.NoError(t, err)
	upstream := map[string]int{}
	_, err = failover.Do(context.Background(), pool, serve(upstream, false))
	require.Error(t, err, "the budget refuses the failover to healthy")
	now = now.Add(time.Hour) // the cooldown is over: the next call probes
	_, err = failover.Do(context.Background(), pool, func(_ context.Context, m failover.Member[int]) (string, error) {
		upstream[m.Name]++
		return m.Name, nil
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"limited": 2}, upstream)
	got := collect(t, reader)
	member := map[string]string{"failover.member": "limited"}
	assert.Equal(t, []point{{member, 1}}, got["failover.retry_budget.refusals"])
	assert.Equal(t, []point{{member, 1}}, got["failover.member.probes"])
	assert.Equal(t, []point{{member, 1}}, got["failover.member.recoveries"])
}

func TestTracesSpanTree(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	pool, err := failover.New(members(), otelfailover.Traces(tp))
	require.NoError(t, err)
	ctx, caller := tp.Tracer("app").Start(context.Background(), "handler")
	upstream := map[string]int{}
	out, err := failover.Do(otelfailover.WithOperation(ctx, "chat", "openai"), pool, serve(upstream, false))
	caller.End()
	require.NoError(t, err)
	assert.Equal(t, "healthy", out)

	spans := rec.Ended()
	require.Len(t, spans, 5) // three attempts, the call, the caller
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	require.Len(t, byName["failover.call"], 1)
	call := byName["failover.call"][0]
	assert.Equal(t, caller.SpanContext().SpanID(), call.Parent().SpanID(), "the caller's span is the call's parent")
	attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.String()
		}
		return m
	}
	assert.Equal(t, map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "failover.member": "healthy"}, attrs(call))
	attempts := byName["failover.attempt"]
	require.Len(t, attempts, 3)
	wantMember := []string{"revoked", "limited", "healthy"}
	wantReason := []string{"auth", "rate_limit", ""}
	for i, a := range attempts { // ended in order
		assert.Equal(t, call.SpanContext().SpanID(), a.Parent().SpanID())
		at := attrs(a)
		assert.Equal(t, wantMember[i], at["failover.member"])
		assert.Equal(t, wantReason[i], at["failover.reason"])
		assert.Equal(t, []string{"1", "2", "3"}[i], at["failover.attempt"])
		if i > 0 {
			assert.False(t, a.StartTime().Before(attempts[i-1].EndTime()), "attempt %d starts after %d ends", i+1, i)
		}
		if wantReason[i] != "" {
			assert.NotEmpty(t, at["failover.cooldown.until"])
		} else {
			assert.NotContains(t, at, "failover.cooldown.until")
		}
	}

	// The next call finds the two keys cooling and fails on the healthy
	// one: their skips are spans too.
	rec2 := tracetest.NewSpanRecorder()
	tp.RegisterSpanProcessor(rec2)
	_, err = failover.Do(context.Background(), pool, serve(upstream, true))
	require.Error(t, err)
	var skipped []string
	for _, s := range rec2.Ended() {
		if a := attrs(s); a["failover.skipped"] == "true" {
			skipped = append(skipped, a["failover.member"]+":"+a["failover.reason"]+":"+a["failover.skip.cause"])
		}
	}
	assert.ElementsMatch(t, []string{"revoked:auth:cooling", "limited:rate_limit:cooling"}, skipped)
}
