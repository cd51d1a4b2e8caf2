//go:build !gc || purego

package failover

import (
	"sync"
	"sync/atomic"
)

// token names the processor that holds it: sync.Pool keeps a token per
// processor, so a goroutine gets back the token its processor put last.
type token struct{ n uint32 }

var (
	tokens    = sync.Pool{New: func() any { return &token{n: nextToken.Add(1) - 1} }}
	nextToken atomic.Uint32 // numbers the tokens
)

// here returns the number of the token of the processor the goroutine runs
// on: a stable number per processor in the steady state, which picks a
// shard of a member's call counters. Nothing but speed depends on it: any
// shard counts right.
func here() uint32 {
	t := tokens.Get().(*token)
	n := t.n
	tokens.Put(t)
	return n
}
