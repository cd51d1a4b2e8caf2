// Package benchmarks measures failover against its peers on the same no-op
// workload, side by side in one run. It is its own module so that the core
// does not depend on the peers.
package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/llmfailover/failover"
	"github.com/sony/gobreaker/v2"
)

var (
	sink string
	mu   sync.Mutex
)

// keep stores a parallel benchmark's last result once per goroutine: a
// shared sink written on every call would cost the very cache line the
// parallel benchmarks measure.
func keep(s string) {
	mu.Lock()
	sink = s
	mu.Unlock()
}

func work() (string, error) { return "ok", nil }

// BenchmarkDirect is the no-op call itself.
func BenchmarkDirect(b *testing.B) {
	for b.Loop() {
		sink, _ = work()
	}
}

func pool(b *testing.B, n int) *failover.Pool[string] {
	ms := make([]failover.Member[string], n)
	for i := range ms {
		ms[i] = failover.Member[string]{Name: fmt.Sprint("m", i), Client: "ok"}
	}
	p, err := failover.New(ms)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func noop(context.Context, failover.Member[string]) (string, error) { return work() }

// BenchmarkFailover is Do on a healthy pool.
func BenchmarkFailover(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			p, ctx := pool(b, n), context.Background()
			b.ReportAllocs()
			for b.Loop() {
				sink, _ = failover.Do(ctx, p, noop)
			}
		})
	}
}

func BenchmarkFailoverParallel(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			p := pool(b, n)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				var last string
				for pb.Next() {
					last, _ = failover.Do(ctx, p, noop)
				}
				keep(last)
			})
		})
	}
}

// BenchmarkFailoverFailingOver: the first member answers an error
// classified as a rate limit, the second serves (the first is re-enabled
// each time so that every call fails over).
func BenchmarkFailoverFailingOver(b *testing.B) {
	limited := errors.New("429 Too Many Requests")
	fn := func(_ context.Context, m failover.Member[string]) (string, error) {
		if m.Name == "m0" {
			return "", limited
		}
		return work()
	}
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			p, ctx := pool(b, n), context.Background()
			b.ReportAllocs()
			for b.Loop() {
				sink, _ = failover.Do(ctx, p, fn)
				_ = p.Enable("m0")
			}
		})
	}
}

func BenchmarkStatus(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			p := pool(b, n)
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Status()
			}
		})
	}
}

// BenchmarkGobreaker is gobreaker's Execute around the same call.
func BenchmarkGobreaker(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[string](gobreaker.Settings{Name: "bench"})
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = cb.Execute(work)
	}
}

func BenchmarkGobreakerParallel(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[string](gobreaker.Settings{Name: "bench"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var last string
		for pb.Next() {
			last, _ = cb.Execute(work)
		}
		keep(last)
	})
}

// BenchmarkFailsafe is failsafe-go's retry + circuit breaker around the
// same call.
func BenchmarkFailsafe(b *testing.B) {
	ex := failsafe.With[string](retrypolicy.NewWithDefaults[string](), circuitbreaker.NewWithDefaults[string]())
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = ex.Get(work)
	}
}

func BenchmarkFailsafeParallel(b *testing.B) {
	ex := failsafe.With[string](retrypolicy.NewWithDefaults[string](), circuitbreaker.NewWithDefaults[string]())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var last string
		for pb.Next() {
			last, _ = ex.Get(work)
		}
		keep(last)
	})
}
