package otelfailover_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/otelfailover"
)

func healthyPool(b *testing.B, opts ...failover.Option) *failover.Pool[int] {
	p, err := failover.New([]failover.Member[int]{{Name: "a", Model: "gpt-4o"}, {Name: "b"}}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func ok(context.Context, failover.Member[int]) (int, error) { return 1, nil }

// BenchmarkHealthyDo is the healthy path: off, with metrics (an SDK
// meter provider with a manual reader), and with metrics and traces (an
// SDK tracer provider recording every span).
func BenchmarkHealthyDo(b *testing.B) {
	ctx := otelfailover.WithOperation(context.Background(), "chat", "openai")
	run := func(b *testing.B, p *failover.Pool[int]) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := failover.Do(ctx, p, ok); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("off", func(b *testing.B) { run(b, healthyPool(b)) })
	b.Run("metrics", func(b *testing.B) {
		om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
		if err != nil {
			b.Fatal(err)
		}
		run(b, healthyPool(b, om.Option()))
	})
	b.Run("metrics+traces", func(b *testing.B) {
		om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
		run(b, healthyPool(b, om.Option(), otelfailover.Traces(tp)))
	})
}
