package failover_test

import (
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type doer interface{ Do() }

// New says exactly what is wrong, naming the member or the option.
func TestNewValidation(t *testing.T) {
	ok := &fakeClient{}
	m := func(name string, mod func(*failover.Member[*fakeClient])) failover.Member[*fakeClient] {
		mem := failover.Member[*fakeClient]{Name: name, Client: ok}
		if mod != nil {
			mod(&mem)
		}
		return mem
	}
	bad := func(c failover.Cooldowns) failover.Option { return failover.WithCooldowns(c) }
	for _, tc := range []struct {
		name    string
		members []failover.Member[*fakeClient]
		opts    []failover.Option
		want    []string
	}{
		{"empty pool", nil, nil, []string{"no members"}},
		{"empty name", []failover.Member[*fakeClient]{m("", nil)}, nil, []string{"member 0: Name is empty"}},
		{"duplicate", []failover.Member[*fakeClient]{m("a", nil), m("a", nil)}, nil, []string{`member 1 ("a"): Name duplicates member 0`}},
		{"nil client", []failover.Member[*fakeClient]{m("a", func(x *failover.Member[*fakeClient]) { x.Client = nil })}, nil, []string{`member 0 ("a"): Client is nil`}},
		{"negative weight", []failover.Member[*fakeClient]{m("a", func(x *failover.Member[*fakeClient]) { x.Weight = -1 })}, nil, []string{`member 0 ("a"): Weight -1 is negative`}},
		{"negative limits", []failover.Member[*fakeClient]{m("a", func(x *failover.Member[*fakeClient]) { x.Limits = failover.Limits{RPM: -1, TPM: -2, MaxInFlight: -3} })}, nil,
			[]string{"Limits.RPM -1 is negative", "Limits.TPM -2 is negative", "Limits.MaxInFlight -3 is negative"}},
		{"nil option", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{nil}, []string{"option 0 is nil"}},
		{"negative durations", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{
			failover.WithAttemptTimeout(-time.Second), failover.WithWaitForRecovery(-1), failover.WithStickiness(-time.Minute), failover.WithMaxAttempts(-2)},
			[]string{"WithAttemptTimeout: duration -1s is negative", "WithWaitForRecovery: duration -1ns is negative", "WithStickiness: duration -1m0s is negative", "WithMaxAttempts: -2 is negative"}},
		{"strategy", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{failover.WithStrategy(9)}, []string{"WithStrategy: unknown strategy 9"}},
		{"budget", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{failover.WithRetryBudget(-1, -2)}, []string{"WithRetryBudget: ratio -1 must be in [0, 1000] and floor -2 not negative"}},
		{"hedge", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{failover.WithHedge(-time.Second)}, []string{"WithHedge: duration -1s is negative"}},
		{"jitter", []failover.Member[*fakeClient]{m("a", nil)}, []failover.Option{bad(func() failover.Cooldowns {
			c := failover.DefaultCooldowns()
			c.Transient.Jitter = 1.5
			c.Quota.Base = -time.Second
			c.Permanent.Max = time.Second
			return c
		}())}, []string{"WithCooldowns: Transient.Jitter: 1.5 is outside [0, 1]", "WithCooldowns: Quota.Base: duration -1s is negative", "WithCooldowns: Permanent.Max: 1s is below Base 15m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := failover.New(tc.members, tc.opts...)
			require.ErrorIs(t, err, failover.ErrInvalid)
			assert.Nil(t, p)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	// Nil clients of every nillable kind.
	var nilIface doer
	_, err := failover.New([]failover.Member[doer]{{Name: "i", Client: nilIface}})
	assert.ErrorContains(t, err, `member 0 ("i"): Client is nil`)
	_, err = failover.New([]failover.Member[func()]{{Name: "f"}})
	assert.ErrorContains(t, err, "Client is nil")
	_, err = failover.New([]failover.Member[map[string]string]{{Name: "m"}})
	assert.ErrorContains(t, err, "Client is nil")
	_, err = failover.New([]failover.Member[chan int]{{Name: "c"}})
	assert.ErrorContains(t, err, "Client is nil")
	// A value type is never nil.
	_, err = failover.New([]failover.Member[string]{{Name: "s"}})
	assert.NoError(t, err)
}

func TestBackoffWindow(t *testing.T) {
	b := failover.Backoff{Base: 5 * time.Second, Max: 5 * time.Minute, Jitter: 0.2}
	assert.Equal(t, 5*time.Second, b.Window(1, 0.5))
	assert.Equal(t, 4*time.Second, b.Window(1, 0))
	assert.Equal(t, 10*time.Second, b.Window(2, 0.5))
	assert.Equal(t, 5*time.Minute, b.Window(20, 0.5), "capped")
	assert.Equal(t, 5*time.Minute, b.Window(1000, 0.99), "no overflow")
	assert.Equal(t, 7*time.Second, failover.Backoff{Base: 7 * time.Second}.Window(3, 0.5), "Max 0 means Base")
	assert.Equal(t, 15*time.Second, failover.Backoff{Base: 5 * time.Second, Max: time.Hour, Factor: 3}.Window(2, 0.5))
}

func TestStringers(t *testing.T) {
	assert.Equal(t, "cooling_down", failover.CoolingDown.String())
	b, err := failover.Probing.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "probing", string(b))
	var s failover.State
	require.NoError(t, s.UnmarshalText([]byte("disabled")))
	assert.Equal(t, failover.Disabled, s)
	assert.Error(t, s.UnmarshalText([]byte("bogus")))
	_, err = failover.State(9).MarshalText()
	assert.Error(t, err)
	assert.Equal(t, "weighted", failover.Weighted.String())
	assert.Equal(t, "quota", failover.LaneQuota.String())
	assert.Equal(t, "recovered", failover.EventRecovered.String())
	assert.Equal(t, "EventKind(42)", failover.EventKind(42).String())
}
