package failover

import (
	"context"
	"fmt"
	"testing"
)

// LeastInFlight in a large tier (two members drawn at random) avoids a
// member with calls in flight, and still takes it when it alone can serve.
func TestLeastInFlightLargeTierAvoidsBusy(t *testing.T) {
	ms := make([]Member[string], 64)
	for i := range ms {
		ms[i] = Member[string]{Name: fmt.Sprintf("m%d", i), Client: "ok"}
	}
	p, err := New(ms, WithStrategy(LeastInFlight))
	if err != nil {
		t.Fatal(err)
	}
	busy := p.cfg.Load().members[3].st
	for range 100 {
		busy.calls.start()
	}
	served := map[string]int{}
	fn := func(_ context.Context, m Member[string]) (string, error) { return m.Name, nil }
	for range 5000 {
		got, err := Do(context.Background(), p, fn)
		if err != nil {
			t.Fatal(err)
		}
		served[got]++
	}
	if served["m3"] != 0 {
		t.Fatalf("the member with 100 calls in flight served %d of 5,000 calls", served["m3"])
	}
	if len(served) < 50 {
		t.Fatalf("5,000 calls went to %d of 63 idle members", len(served))
	}
	for i := range ms {
		if i != 3 {
			if err := p.Disable(ms[i].Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, err := Do(context.Background(), p, fn); err != nil || got != "m3" {
		t.Fatalf("the only ready member: %q, %v", got, err)
	}
}

// The alias table draws each position in proportion to its weight.
func TestAliasTable(t *testing.T) {
	for _, weights := range [][]uint64{{1}, {3, 1}, {1, 2, 3, 4}, {5, 5, 5}, {1, maxWeight, 7}} {
		prob, alias := aliasTable(weights)
		var sum float64
		for _, w := range weights {
			sum += float64(w)
		}
		// The exact share of each position: its own column's accepted
		// part plus what other columns give it.
		got := make([]float64, len(weights))
		n := float64(len(weights))
		for k := range weights {
			keep := float64(prob[k]) / (1 << 64)
			got[k] += keep / n
			got[alias[k]] += (1 - keep) / n
		}
		for k, w := range weights {
			if want := float64(w) / sum; got[k]-want > 1e-9 || want-got[k] > 1e-9 {
				t.Errorf("weights %v: position %d has share %v, want %v", weights, k, got[k], want)
			}
		}
	}
}
