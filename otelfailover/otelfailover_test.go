package otelfailover_test

import (
	"context"
	"testing"
	"testing/synctest"
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
	value float64 // a sum's or a gauge's value, or a histogram's count
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
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), float64(p.Count)})
					out[m.Name+".sum"] = append(out[m.Name+".sum"], point{attrs(p.Attributes), float64(p.Sum)}) // token counts
				}
			}
		}
	}
	return out
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

	// A call that succeeds after passing the cooling keys over has an
	// event for each on its span, in the order it looked.
	rec3 := tracetest.NewSpanRecorder()
	tp.RegisterSpanProcessor(rec3)
	out, err = failover.Do(context.Background(), pool, serve(upstream, false))
	require.NoError(t, err)
	assert.Equal(t, "healthy", out)
	var skips []string
	for _, s := range rec3.Ended() {
		if s.Name() != otelfailover.SpanCall {
			assert.Empty(t, s.Events(), s.Name())
			continue
		}
		for _, ev := range s.Events() {
			assert.Equal(t, otelfailover.EventSkip, ev.Name)
			a := map[string]string{}
			for _, kv := range ev.Attributes {
				a[string(kv.Key)] = kv.Value.String()
			}
			skips = append(skips, a["failover.member"]+":"+a["failover.skip.cause"])
		}
	}
	assert.Equal(t, []string{"revoked:cooling", "limited:cooling"}, skips)
}

// TestMetricsHedges counts a hedge on the member it started on, and the
// slow first attempt that lost neither as a failure nor as a duration.
func TestMetricsHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
		require.NoError(t, err)
		pool, err := failover.New([]failover.Member[int]{{Name: "slow"}, {Name: "fast"}}, om.Option(), failover.WithHedge(time.Second))
		require.NoError(t, err)
		out, err := failover.Do(context.Background(), pool, func(ctx context.Context, m failover.Member[int]) (string, error) {
			if m.Name == "slow" {
				select {
				case <-time.After(time.Minute):
				case <-ctx.Done():
					return "", ctx.Err()
				}
			}
			return m.Name, nil
		})
		require.NoError(t, err)
		assert.Equal(t, "fast", out)
		synctest.Wait() // the loser's end
		got := collect(t, reader)
		fast, slow := map[string]string{"failover.member": "fast"}, map[string]string{"failover.member": "slow"}
		assert.Equal(t, []point{{fast, 1}}, got["failover.member.hedges"])
		assert.ElementsMatch(t, []point{{fast, 1}, {slow, 1}}, got["failover.member.requests"])
		assert.Empty(t, got["failover.member.failures"], "the loser is not a failure")
		assert.Equal(t, []point{{fast, 1}}, got["failover.attempt.duration"], "nor an attempt duration")
	})
}

// One Metrics serves one pool: a second pool made with its option is
// refused, and Err says so; the first pool's gauges stay.
func TestMetricsOnePool(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	_, err = failover.New([]failover.Member[int]{{Name: "first"}}, om.Option())
	require.NoError(t, err)
	require.NoError(t, om.Err())
	_, err = failover.New([]failover.Member[int]{{Name: "second"}}, om.Option())
	require.NoError(t, err)
	assert.ErrorContains(t, om.Err(), "one Metrics serves one pool")
	got := collect(t, reader)
	assert.Equal(t, []point{{map[string]string{"failover.member": "first"}, 0}}, got["failover.member.in_flight"])
}
