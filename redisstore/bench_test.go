package redisstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
)

func ok(context.Context, failover.Member[string]) (string, error) { return "ok", nil }

// BenchmarkHealthyPath is a call on a healthy member: the pool alone, with
// a MemoryStore and with the Redis store. scripts/bench.sh prints the ratio.
func BenchmarkHealthyPath(b *testing.B) {
	srv := startRedis(b)
	stores := []struct {
		name  string
		store func() failover.Store
	}{
		{"local", func() failover.Store { return nil }},
		{"memory", func() failover.Store { return failover.NewMemoryStore() }},
		{"redis", func() failover.Store { return open(b, srv) }},
	}
	for _, s := range stores {
		b.Run("store="+s.name, func(b *testing.B) {
			var opts []failover.Option
			if st := s.store(); st != nil {
				opts = append(opts, failover.WithStore(st))
			}
			p, err := failover.New(members(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := failover.Do(ctx, p, ok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLimitedCall is a call on a member with an RPM limit: with the
// Redis store each one runs the sliding-window script.
func BenchmarkLimitedCall(b *testing.B) {
	srv := startRedis(b)
	limited := []failover.Member[string]{{Name: "limited", Client: "limited", Limits: failover.Limits{RPM: 1 << 30}}}
	for _, name := range []string{"local", "redis"} {
		b.Run("store="+name, func(b *testing.B) {
			var opts []failover.Option
			if name == "redis" {
				opts = append(opts, failover.WithStore(open(b, srv)))
			}
			p, err := failover.New(limited, opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := failover.Do(ctx, p, ok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPropagation is the time from a Disable or Enable on one replica
// to the event it causes on another, through Redis pub/sub. It reports the
// median and the 99th percentile in milliseconds.
func BenchmarkPropagation(b *testing.B) {
	srv := startRedis(b)
	seen := make(chan failover.Event, 1)
	a, err := failover.New(members(), failover.WithStore(open(b, srv)))
	if err != nil {
		b.Fatal(err)
	}
	_, err = failover.New(members(), failover.WithStore(open(b, srv)), failover.WithObserver(func(ev failover.Event) {
		if ev.Member == "free" && (ev.Kind == failover.EventDisabled || ev.Kind == failover.EventRecovered) {
			seen <- ev
		}
	}))
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	disable := true
	for b.Loop() {
		start := time.Now()
		if disable {
			err = a.Disable("free")
		} else {
			err = a.Enable("free")
		}
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			b.Fatal("the change never reached the other replica")
		}
		lat = append(lat, time.Since(start))
		disable = !disable
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

var _ = redisstore.ErrUnavailable
