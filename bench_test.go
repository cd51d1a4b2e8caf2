package failover_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/llmfailover/failover"
)

var sink string

func noop(_ context.Context, m failover.Member[string]) (string, error) { return m.Client, nil }

func benchPool(b *testing.B, n int, opts ...failover.Option) *failover.Pool[string] {
	ms := make([]failover.Member[string], n)
	for i := range ms {
		ms[i] = failover.Member[string]{Name: fmt.Sprintf("m%d", i), Client: "ok"}
	}
	p, err := failover.New(ms, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkDirect is the baseline: the no-op call without the pool.
func BenchmarkDirect(b *testing.B) {
	m := failover.Member[string]{Name: "m0", Client: "ok"}
	for b.Loop() {
		sink, _ = noop(context.Background(), m)
	}
}

// BenchmarkDo is the healthy path: Do around a no-op call.
func BenchmarkDo(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			p := benchPool(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				sink, _ = failover.Do(ctx, p, noop)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		p := benchPool(b, 4)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				sink, _ = failover.Do(ctx, p, noop)
			}
		})
	})
}

// The healthy path allocates nothing of its own.
func TestHealthyPathAllocatesNothing(t *testing.T) {
	ms := []failover.Member[string]{{Name: "a", Client: "ok"}, {Name: "b", Client: "ok"}}
	p, err := failover.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := failover.New(ms, failover.WithStore(failover.NewMemoryStore()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { sink, _ = failover.Do(ctx, p, noop) }); n != 0 {
		t.Fatalf("Do allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() { sink, _ = failover.Do(ctx, shared, noop) }); n != 0 {
		t.Fatalf("Do with a store allocates %v times per call", n)
	}
}
