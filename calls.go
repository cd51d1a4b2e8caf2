package failover

import "sync/atomic"

// calls counts a member's calls in one word, so that starting a call is a
// single atomic add: the calls in flight in the low 24 bits, the calls ever
// started above them.
type calls struct{ v atomic.Uint64 }

const (
	inFlightBits = 24
	inFlightMask = 1<<inFlightBits - 1
	oneCall      = 1<<inFlightBits | 1 // one more started, one more in flight
)

// start counts a call that starts.
func (c *calls) start() { c.v.Add(oneCall) }

// startBelow counts a call that starts if fewer than max are in flight.
func (c *calls) startBelow(max int64) bool {
	for {
		v := c.v.Load()
		if int64(v&inFlightMask) >= max {
			return false
		}
		if c.v.CompareAndSwap(v, v+oneCall) {
			return true
		}
	}
}

// unstart takes back a start that did not go ahead.
func (c *calls) unstart() { c.v.Add(^uint64(oneCall - 1)) }

// end counts a call that ended.
func (c *calls) end() { c.v.Add(^uint64(0)) }

// enter counts an outcome reported from outside a call, which end will
// count out, without counting a start.
func (c *calls) enter() { c.v.Add(1) }

func (c *calls) inFlight() int64  { return int64(c.v.Load() & inFlightMask) }
func (c *calls) requests() uint64 { return c.v.Load() >> inFlightBits }
