package failover

import (
	"sync/atomic"
)

// WithRetryBudget caps failover, in the spirit of gRPC retry throttling and
// Envoy retry budgets, so that an outage of every provider does not multiply
// traffic. Each call earns ratio tokens; each attempt after a call's first
// spends one; a call that finds fewer than one token fails fast with its
// first error. The budget starts with floor tokens and holds at most
// floor + 100·ratio, so over n calls at most n·(1+ratio) + floor attempts
// reach providers. Typical: WithRetryBudget(0.2, 10). The default is no
// budget: every member may be tried.
func WithRetryBudget(ratio float64, floor int) Option {
	return func(o *settings) { o.budget = &budgetSpec{ratio: ratio, floor: floor} }
}

type budgetSpec struct {
	ratio float64
	floor int
}

// budget counts tokens in thousandths, without a clock or a lock.
type budget struct {
	milli atomic.Int64
	earn  int64
	limit int64
}

func newBudget(s *budgetSpec) *budget {
	if s == nil {
		return nil
	}
	b := &budget{earn: int64(s.ratio * 1000), limit: int64(s.floor)*1000 + int64(s.ratio*100*1000)}
	b.milli.Store(int64(s.floor) * 1000)
	return b
}

// deposit adds a call's share, up to the limit.
func (b *budget) deposit() {
	for {
		v := b.milli.Load()
		n := min(v+b.earn, b.limit)
		if n == v || b.milli.CompareAndSwap(v, n) {
			return
		}
	}
}

// spend takes one token for a retry, if there is one.
func (b *budget) spend() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}
